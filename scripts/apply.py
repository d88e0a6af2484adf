#!/usr/bin/env python3
"""Build the patched YOLOv5 v7.0 tree: pinned upstream baseline + overlay/ + patches/series.

The result is a git repository (default ``yolov5/``) whose history is
``upstream`` (tag) -> one overlay commit -> one commit per patch, so
``git diff upstream`` inside it shows everything this project changed.

Usage:
    python scripts/apply.py                    # the real v7.0 commit: ../shared bundle, else GitHub
    python scripts/apply.py --repo /path/to/yolov5.git     # or a bundle / mirror (env YOLOV5_REPO)
    python scripts/apply.py --source pypi      # the yolov5==7.0.0 wheel: NOT v7.0's code (see --help)
    python scripts/apply.py --check            # do all patches apply? changes nothing
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
PINNED_COMMIT = '915bbf294bb74c859f0b41f1c23bc395014ea679'
PINNED_TREE = 'c54a6d586927aea25e80574e1e54ea0534ef679d'  # the commit's tree: content, whatever the source
PINNED_TAG = 'v7.0'
GIT_URL = 'https://github.com/ultralytics/yolov5.git'
# The pinned commit as a git bundle beside the project (../shared/upstream/SOURCE.md): offline builds use it.
SHARED_BUNDLE = PROJECT.parent / 'shared' / 'upstream' / 'yolov5-v7.0.bundle'
PYPI_REQUIREMENT = 'yolov5==7.0.0'
BASELINE_TAG = 'upstream'
KEY_TRAILER = 'Overlay-Build-Key'
# Fixed identity and dates make every build of the same inputs produce the same commit hashes.
AUTHOR = ('yolov5-overlay apply.py', 'apply@yolov5-overlay.invalid')
COMMIT_DATE = '2022-11-22T00:00:00+00:00'  # v7.0 release day

# Files of the PyPI distribution that exist only to make it a package (not in upstream's repo).
PYPI_ONLY_FILES = ('__init__.py', 'cli.py', 'helpers.py')
# What the wheel changes against commit 915bbf29, compared file by file (said whenever it is used).
PYPI_DIFFERS = ('it is a third party\'s repackaging of YOLOv5, not commit 915bbf29: train.py (about 200 lines: S3 '
                'upload, COCO conversion through sahi, logger arguments), val.py, detect.py, export.py, benchmarks.py '
                '(val.run takes batch before imgsz: it validates at 640 whatever --img says), utils/dataloaders.py and '
                'utils/metrics.py (bbox_iou clamps heights instead of adding eps: the CIoU loss differs) are not '
                'v7.0\'s')
# `from yolov5.models.x import y` -> `from models.x import y`; `import yolov5.val as v` -> `import val as v`;
# `yolov5.export.run(...)` -> `export.run(...)`: upstream runs its scripts from the tree root.
IMPORT_REWRITES = (
    (re.compile(r'(?<![\w.])(from|import) yolov5\.'), r'\1 '),
    (re.compile(r'^from yolov5 import __version__$', re.M), "__version__ = '7.0.0'  # was: from yolov5 import __version__"),
    (re.compile(r'(?<![\w.])yolov5\.(export|val|train|detect|segment|classify)\.'), r'\1.'),
)


class ApplyError(RuntimeError):
    """A failure the user can act on; the message says what to do."""


def log(msg: str) -> None:
    print(f'apply: {msg}', flush=True)


def default_cache() -> Path:
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'yolov5-overlay'


# ----------------------------------------------------------------------------------------------- baselines
@dataclass
class Baseline:
    files: Path  # folder holding the upstream file tree
    source: str  # 'git' or 'pypi'
    provenance: str  # commit message body saying where it came from


def baseline_from_git(repo_url: str, cache: Path, work: Path) -> Baseline:
    import git  # GitPython

    local = Path(repo_url).expanduser()
    if local.exists():  # a bundle or a clone on disk: one cache entry per file, wherever it is named from
        repo_url = str(local.resolve())
    mirror = cache / 'git' / (hashlib.sha1(repo_url.encode()).hexdigest()[:12] + '.git')
    if mirror.exists():
        bare = git.Repo(mirror)
        if not _has_commit(bare, PINNED_COMMIT):
            log(f'fetching {repo_url} into cache {mirror}')
            bare.git.fetch(repo_url, '+refs/tags/*:refs/tags/*', '+refs/heads/*:refs/heads/*')
    else:
        log(f'cloning {repo_url} into cache {mirror}')
        mirror.parent.mkdir(parents=True, exist_ok=True)
        tmp = mirror.with_suffix('.partial')
        shutil.rmtree(tmp, ignore_errors=True)
        git.Repo.clone_from(repo_url, tmp, bare=True)
        tmp.rename(mirror)
        bare = git.Repo(mirror)
    if not _has_commit(bare, PINNED_COMMIT):
        raise ApplyError(f'{repo_url} does not contain the pinned commit {PINNED_COMMIT} (YOLOv5 {PINNED_TAG}); '
                         'point --repo / YOLOV5_REPO at a clone or bundle of ultralytics/yolov5 that has it')
    commit = bare.commit(PINNED_COMMIT)
    if commit.hexsha != PINNED_COMMIT or commit.tree.hexsha != PINNED_TREE:  # a forged or replaced object
        raise ApplyError(f'{repo_url}: commit {commit.hexsha} has tree {commit.tree.hexsha}, but YOLOv5 '
                         f'{PINNED_TAG} is commit {PINNED_COMMIT} with tree {PINNED_TREE}; refusing it')
    files = work / 'baseline'
    files.mkdir(parents=True)
    archive = work / 'baseline.tar'
    with archive.open('wb') as f:
        bare.archive(f, PINNED_COMMIT, format='tar')
    shutil.unpack_archive(str(archive), str(files), 'tar')
    archive.unlink()
    # where it came from does not change the tree, so local paths are named by their file only (same hashes)
    origin = repo_url if not local.exists() else local.name
    return Baseline(files, 'git', f'Source: git {origin}\nCommit: {PINNED_COMMIT} (tag {PINNED_TAG})\n'
                    f'Tree: {PINNED_TREE}')


def _has_commit(repo, sha: str) -> bool:
    try:
        return repo.commit(sha).hexsha == sha
    except Exception:
        return False


def baseline_from_pypi(cache: Path, work: Path) -> Baseline:
    log(f'warning: the PyPI package {PYPI_REQUIREMENT} is not YOLOv5 {PINNED_TAG}: {PYPI_DIFFERS}. Build from git '
        'for results that are v7.0\'s (the default)')
    wheel = _pypi_wheel(cache)
    files = work / 'baseline'
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if not name.startswith('yolov5/') or name.endswith('/') or '__pycache__' in name:
                continue
            rel = name[len('yolov5/'):]
            if rel in PYPI_ONLY_FILES:
                continue
            dst = files / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            data = z.read(name)
            if rel.endswith('.py'):
                data = restore_import_layout(data.decode()).encode()
            dst.write_bytes(data)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    restored = restore_upstream_text(files)
    return Baseline(files, 'pypi', f'Source: PyPI {PYPI_REQUIREMENT} ({wheel.name}, sha256 {sha})\n'
                    f'The packaged YOLOv5 {PINNED_TAG}: package-only files {", ".join(PYPI_ONLY_FILES)} dropped,\n'
                    'imports of the form `yolov5.x` rewritten to upstream\'s top-level `x`,\n'
                    f'packaging deviations from upstream undone: {", ".join(restored) or "none"}.\n'
                    f'Not v7.0: {PYPI_DIFFERS}.')


def restore_upstream_text(files: Path) -> list[str]:
    """Apply patches/pypi/*.patch: places where the wheel's code differs from upstream v7.0 and breaks it."""
    applied = []
    for patch in sorted((PROJECT / 'patches' / 'pypi').glob('*.patch')):
        env = {**os.environ, 'GIT_CEILING_DIRECTORIES': str(files.parent)}  # plain patching, no enclosing repo
        r = subprocess.run(['git', 'apply', str(patch)], cwd=files, env=env, capture_output=True, text=True)
        if r.returncode:
            raise ApplyError(f'patches/pypi/{patch.name} does not apply to the wheel:\n{r.stderr.strip()}')
        h = hashlib.sha256(patch.read_bytes()).hexdigest()[:12]
        applied.append(f'patches/pypi/{patch.name} ({h})')
    return applied


def restore_import_layout(text: str) -> str:
    for pattern, repl in IMPORT_REWRITES:
        text = pattern.sub(repl, text)
    return text


def _pypi_wheel(cache: Path) -> Path:
    folder = cache / 'pypi'
    found = sorted(folder.glob('yolov5-7.0.0-*.whl'))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    log(f'downloading {PYPI_REQUIREMENT} from PyPI into cache {folder}')
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:', '--quiet', '-d', str(folder),
           PYPI_REQUIREMENT]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(folder.glob('yolov5-7.0.0-*.whl'))
    if result.returncode or not found:
        raise ApplyError(f'could not download {PYPI_REQUIREMENT} with pip:\n{result.stderr.strip()}')
    return found[0]


def git_sources(repo: str | None) -> list[str]:
    """Where to look for the pinned commit, in order: --repo / YOLOV5_REPO, else the bundle beside the project,
    then GitHub."""
    if repo:
        return [repo]
    return [str(SHARED_BUNDLE), GIT_URL] if SHARED_BUNDLE.exists() else [GIT_URL]


def get_baseline(source: str, repo: str | None, cache: Path, work: Path) -> Baseline:
    if source == 'pypi':
        return baseline_from_pypi(cache, work)
    failures = []
    for url in git_sources(repo):  # 'git' and 'auto' alike: the PyPI wheel only when asked for by name
        try:
            return baseline_from_git(url, cache, work)
        except Exception as e:  # no network, no git, bad mirror: the next source
            shutil.rmtree(work / 'baseline', ignore_errors=True)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            failures.append(f'{url}: {reason}')
            if isinstance(e, ApplyError) and 'refusing' in str(e):
                raise  # a source claiming v7.0 with other content is an error, not a miss
    raise ApplyError('the pinned commit could not be had from any git source:\n  ' + '\n  '.join(failures) +
                     f'\nGive a clone or bundle of ultralytics/yolov5 (tag {PINNED_TAG}) with --repo or YOLOV5_REPO '
                     f'(e.g. `git bundle create yolov5-v7.0.bundle --all` on a machine with it), or put it at '
                     f'{SHARED_BUNDLE}; `--source pypi` builds from the PyPI package instead, which is not v7.0\'s code')


# ------------------------------------------------------------------------------------------------- patches
@dataclass
class Patch:
    path: Path
    subject: str


def read_series(patches_dir: Path) -> list[Patch]:
    series = patches_dir / 'series'
    if not series.exists():
        return []
    out = []
    for line in series.read_text().splitlines():
        name = line.split('#', 1)[0].strip()
        if not name:
            continue
        path = patches_dir / name
        if not path.exists():
            raise ApplyError(f'{series} lists {name}, which does not exist')
        out.append(Patch(path, patch_subject(path)))
    return out


def patch_subject(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith('Subject:'):
            return line.split(':', 1)[1].strip()
        if line.startswith(('diff --git', '--- ')):
            break
    raise ApplyError(f'{path.name} has no "Subject:" line in its header (every patch says what and why)')


def describe_failure(patch: Patch, git_output: str) -> str:
    """Name the patch, the file and the hunk that did not apply, from git apply's message."""
    m = re.search(r'patch failed: (.+):(\d+)', git_output)
    if not m:
        return f'patch {patch.path.name} does not apply:\n{git_output.strip()}'
    file, line = m.group(1), int(m.group(2))
    hunk_no, header, current = 0, '', None
    for text in patch.path.read_text().splitlines():
        if text.startswith('+++ '):
            current = text[4:].removeprefix('b/')
            hunk_no = 0
        elif text.startswith('@@') and current == file:
            hunk_no += 1
            old_start = int(re.match(r'@@ -(\d+)', text).group(1))
            if old_start == line:
                header = text
                break
    where = f'hunk #{hunk_no} {header}' if header else f'the hunk at line {line}'
    return f'patch {patch.path.name} does not apply: file {file}, {where}\n{git_output.strip()}'


# --------------------------------------------------------------------------------------------- build steps
def overlay_files(sources: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    """(file, its path in the tree) of every overlay file: overlay/ at the root, the model YAMLs in models/overlay/
    (found by name there, as upstream's own are: train.py --cfg yolov5s_EMA.yaml)."""
    return [(f, str(Path(prefix) / f.relative_to(root))) for root, prefix in sources if root.is_dir()
            for f in sorted(p for p in root.rglob('*') if p.is_file() and '__pycache__' not in p.parts)]


def build_key(baseline: Baseline, sources: list[tuple[Path, str]], patches: list[Patch]) -> str:
    h = hashlib.sha256(baseline.provenance.encode())
    h.update(Path(__file__).read_bytes())  # how the baseline is restored is part of the build
    for f, rel in overlay_files(sources):
        h.update(rel.encode() + b'\0' + f.read_bytes())
    for p in patches:
        h.update(p.path.name.encode() + b'\0' + p.path.read_bytes())
    return h.hexdigest()[:16]


def build_tree(baseline: Baseline, sources: list[tuple[Path, str]], patches: list[Patch], dest: Path, key: str) -> None:
    import git

    shutil.copytree(baseline.files, dest)
    repo = git.Repo.init(dest, initial_branch='main')
    with repo.config_writer() as cw:  # commits made later by the user in this tree need no global identity
        cw.set_value('user', 'name', AUTHOR[0])
        cw.set_value('user', 'email', AUTHOR[1])
    _commit_all(repo, f'YOLOv5 {PINNED_TAG} baseline ({baseline.source})\n\n{baseline.provenance}')
    repo.create_tag(BASELINE_TAG)

    copied = copy_overlay(sources, dest)
    _commit_all(repo, f'Add overlay files ({len(copied)})\n\n' + '\n'.join(copied))

    for i, patch in enumerate(patches):
        # the wheel lacks some of v7.0's files (utils/aws/): a patch's part for them has nothing to change there
        absent = [f for f in patched_files(patch.path) if not (dest / f).exists()] if baseline.source == 'pypi' else []
        try:
            repo.git.apply('--index', '--whitespace=nowarn', *[f'--exclude={f}' for f in absent], str(patch.path))
        except git.GitCommandError as e:
            raise ApplyError(describe_failure(patch, f'{e.stderr}\n{e.stdout}')) from None
        skipped = f'\nNot in this baseline, left out: {", ".join(absent)}' if absent else ''
        trailer = f'\n\n{KEY_TRAILER}: {key}' if i == len(patches) - 1 else ''
        _commit_all(repo, f'{patch.subject}\n\nPatch: patches/{patch.path.name}{skipped}{trailer}')
    if not patches:
        repo.git.commit('--amend', '-m', repo.head.commit.message + f'\n\n{KEY_TRAILER}: {key}',
                        env=_commit_env())


def patched_files(path: Path) -> list[str]:
    """The existing files a patch changes (its '--- a/...' lines)."""
    return [line[6:].strip() for line in path.read_text().splitlines() if line.startswith('--- a/')]


def copy_overlay(sources: list[tuple[Path, str]], dest: Path) -> list[str]:
    copied = []
    for src, rel in overlay_files(sources):
        target = dest / rel
        if target.exists():
            raise ApplyError(f'overlay file {rel} would replace an upstream file; change upstream files with a '
                             'patch in patches/ instead')
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
        copied.append(str(rel))
    return copied


def _commit_env() -> dict:
    return {'GIT_AUTHOR_NAME': AUTHOR[0], 'GIT_AUTHOR_EMAIL': AUTHOR[1], 'GIT_COMMITTER_NAME': AUTHOR[0],
            'GIT_COMMITTER_EMAIL': AUTHOR[1], 'GIT_AUTHOR_DATE': COMMIT_DATE, 'GIT_COMMITTER_DATE': COMMIT_DATE}


def _commit_all(repo, message: str) -> None:
    repo.git.add('--all', '--force')
    repo.git.commit('--allow-empty', '--no-verify', '-q', '-m', message, env=_commit_env())


def existing_state(dest: Path) -> tuple[str, str | None]:
    """('absent' | 'clean' | 'dirty' | 'foreign', build key of HEAD or None)."""
    import git

    if not dest.exists():
        return 'absent', None
    try:
        repo = git.Repo(dest)
        head = repo.head.commit
    except Exception:
        return ('absent', None) if not any(dest.iterdir()) else ('foreign', None)
    m = re.search(rf'^{KEY_TRAILER}: (\w+)$', head.message, re.M)
    if user_files(repo):
        return 'dirty', m and m.group(1)
    return ('clean' if m else 'foreign'), m and m.group(1)


def user_files(repo) -> list[str]:
    """Changed, untracked and git-ignored paths (runs/, *.pt, ...): all would be lost by a rebuild."""
    lines = repo.git.status('--porcelain', '--ignored', '--untracked-files=all').splitlines()
    paths = [line[3:] for line in lines]
    return [p for p in paths if '__pycache__' not in p and not p.endswith('.pyc')]


# ----------------------------------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument('--source', choices=('auto', 'git', 'pypi'), default=os.environ.get('YOLOV5_SOURCE', 'auto'),
                   help=f'where the v7.0 baseline comes from: git (auto, the default: --repo, else {SHARED_BUNDLE} '
                   f'when present, then {GIT_URL}) or pypi ({PYPI_REQUIREMENT}, which is not v7.0\'s code)')
    p.add_argument('--repo', default=os.environ.get('YOLOV5_REPO') or None,
                   help='git URL, local clone or bundle of ultralytics/yolov5 holding the pinned commit '
                   '(env YOLOV5_REPO)')
    p.add_argument('--dest', type=Path, default=PROJECT / 'yolov5', help='tree to build (default: yolov5/)')
    p.add_argument('--cache', type=Path, default=Path(os.environ.get('YOLOV5_OVERLAY_CACHE') or default_cache()),
                   help='cache for the clone and the wheel (env YOLOV5_OVERLAY_CACHE)')
    p.add_argument('--overlay', type=Path, default=PROJECT / 'overlay', help=argparse.SUPPRESS)
    p.add_argument('--models', type=Path, default=PROJECT / 'configs' / 'models', help=argparse.SUPPRESS)
    p.add_argument('--patches', type=Path, default=PROJECT / 'patches', help=argparse.SUPPRESS)
    p.add_argument('--check', action='store_true', help='verify that every patch applies; change nothing')
    p.add_argument('--force', action='store_true', help='rebuild even over uncommitted edits in --dest (lost!)')
    return p.parse_args(argv)


def run(opt) -> int:
    dest = opt.dest.resolve()
    patches = read_series(opt.patches)
    state, old_key = ('absent', None) if opt.check else existing_state(dest)
    if state == 'foreign' and not opt.force:
        raise ApplyError(f'{dest} exists but is not a tree built by apply.py (or has commits of yours on top); '
                         f'move it away, or re-run with --force to replace it')

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='.apply-', dir=dest.parent) as tmp:
        work = Path(tmp)
        baseline = get_baseline(opt.source, opt.repo, opt.cache.resolve(), work)
        sources = [(opt.overlay, '.'), (opt.models, 'models/overlay')]
        key = build_key(baseline, sources, patches)
        if state in ('clean', 'dirty') and old_key == key and not opt.force:
            kept = ' (your uncommitted edits are kept)' if state == 'dirty' else ''
            log(f'{dest} is up to date ({baseline.source} baseline, {len(patches)} patches, key {key}){kept}')
            return 0
        if state == 'dirty' and not opt.force:
            raise ApplyError(f'{dest} has uncommitted changes or untracked files and needs a rebuild; refusing. '
                             f'Save them first (e.g. `git -C {dest} diff > my.patch`, move runs/ away), '
                             'or re-run with --force to discard them')
        staged = work / 'tree'
        build_tree(baseline, sources, patches, staged, key)  # fails before touching dest
        if opt.check:
            log(f'check passed: overlay and all {len(patches)} patches apply to the {baseline.source} baseline')
            return 0
        if dest.exists():
            shutil.rmtree(dest)
        staged.rename(dest)
    log(f'built {dest}: {baseline.source} baseline tagged "{BASELINE_TAG}", overlay, {len(patches)} patches '
        f'(see: git -C {dest} log --oneline; git -C {dest} diff {BASELINE_TAG})')
    return 0


def main(argv=None) -> int:
    opt = parse_args(argv)
    try:
        return run(opt)
    except ApplyError as e:
        print(f'apply: error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
