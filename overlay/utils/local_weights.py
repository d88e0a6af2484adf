# Upstream's released weights from a local folder first, and a clear error offline (patch weights-local-first)
#
# `--weights yolov5n.pt` downloads upstream's release asset when no such file is in the working directory. Offline
# that retried, then ended in a traceback, and a copy kept elsewhere was never found. Here a bare asset name is
# looked up in a weights folder first (YOLOV5_WEIGHTS_DIR, default: `weights/` beside the tree, i.e. the project's
# `weights/`, which `make weights` fills from ../shared/weights); a copy of a release we know is checked against
# its sha256; without a copy, an unreachable GitHub is said at once with where to put the file.
import hashlib
import os
from pathlib import Path

ENV = 'YOLOV5_WEIGHTS_DIR'
# sha256 of upstream's release assets whose bytes we have checked (../shared/weights/SOURCE.md)
KNOWN = {'yolov5n.pt': '4f180cf23ba0717ada0badd6c685026d73d48f184d00fc159c2641284b2ac0a3'}


def weights_dir(root):
    return Path(os.environ.get(ENV) or Path(root).resolve().parent / 'weights')


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def local_copy(name, root):
    """Path of the local copy of release asset name, checked; None when there is none."""
    path = weights_dir(root) / name
    if not path.is_file():
        return None
    expected, got = KNOWN.get(name), None
    if expected and (got := sha256(path)) != expected:
        raise ValueError(f'{path} is not upstream\'s {name}: sha256 {got}, expected {expected}; replace it, or give '
                         f'the file by its path if you mean to use it')
    return path


def reachable(url):
    import requests
    try:
        requests.head(url, timeout=10)
        return True
    except requests.RequestException:
        return False


def not_here_offline(name, root, url):
    return FileNotFoundError(f'{name} is not here, and {url} cannot be reached: put upstream\'s {name} in '
                             f'{weights_dir(root)} (`make weights` copies it from ../shared/weights; {ENV} names '
                             f'another folder), or give the file by its path')
