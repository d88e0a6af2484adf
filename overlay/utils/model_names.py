# Every model YAML at every scale, by name (patch models-by-name-any-scale)
#
# ultralytics names a model at a scale by its letter (yolov8n.yaml is yolov8.yaml at scale n); YOLOv5 ships one
# file per scale for its own models only. Here yolov5n_EMA.yaml is the shipped yolov5s_EMA.yaml with the n scale's
# depth and width, and so for every YAML named yolov5<letter><rest> and every letter of n s m l x. The YAMLs are
# found where check_file looks (the tree's data/, models/, utils/; the project's configs/models/ is copied to
# models/overlay/), the scaled one is written to a temporary file of the requested name, and a name that matches
# nothing is an error with the closest names. No tree import: scripts/ablation/config.py uses it too.
import difflib
import re
import tempfile
from pathlib import Path

import yaml

SCALES = {'n': (0.33, 0.25), 's': (0.33, 0.50), 'm': (0.67, 0.75), 'l': (1.0, 1.0), 'x': (1.33, 1.25)}
SCALED_NAME = re.compile(r'(yolov5)([nsmlx])(.*\.ya?ml)')


def yaml_files(folders):
    """{file name: path} of the YAMLs under folders (first found wins, as the folders are given in order)."""
    found = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob('*.y*ml')):
            found.setdefault(path.name, path)
    return found


def with_scale(cfg, letter):
    """A model dict at the depth and width of scale letter (n s m l x)."""
    if letter not in SCALES:
        raise ValueError(f'scale {letter!r} is not one of {", ".join(SCALES)}')
    depth, width = SCALES[letter]
    return {**cfg, 'depth_multiple': depth, 'width_multiple': width}


def scaled_source(name, known):
    """(path of a YAML of another scale letter, letter) that name means, or None: yolov5n_EMA.yaml ->
    (yolov5s_EMA.yaml, 'n')."""
    m = SCALED_NAME.fullmatch(name)
    if not m:
        return None
    for letter in 'snmlx':
        other = f'{m[1]}{letter}{m[3]}'
        if other in known:
            return known[other], m[2]
    return None


def model_yaml(name, folders):
    """Path of the model YAML called name (a file of that name, else a scaled one written to a temporary file);
    FileNotFoundError naming the closest known names."""
    known = yaml_files(folders)
    if name in known:
        return known[name]
    source = scaled_source(name, known)
    if source is None:
        aliases = {f'{m[1]}{letter}{m[3]}' for n in known if (m := SCALED_NAME.fullmatch(n)) for letter in SCALES}
        close = difflib.get_close_matches(name, sorted(set(known) | aliases), n=4, cutoff=0.6)
        raise FileNotFoundError(f'File not found: {name}' + (f' (closest: {", ".join(close)})' if close else ''))
    path, letter = source
    cfg = with_scale(yaml.safe_load(path.read_text()), letter)
    out = Path(tempfile.gettempdir()) / 'yolov5-overlay-models' / name
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f'.{out.name}.{id(cfg)}')
    tmp.write_text(f'# {path.name} at scale {letter} (utils/model_names.py)\n' + yaml.safe_dump(cfg, sort_keys=False))
    tmp.replace(out)  # whole or not at all: another run may read it at the same time
    return out
