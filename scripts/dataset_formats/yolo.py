"""A folder already in YOLO format: images/ + labels/ (split subfolders or flat; train/images/ as Roboflow
writes it works too) or a .txt beside each image (LabelImg). One line per object: `class x y w h`, or a polygon
`class x1 y1 x2 y2 ...`, normalized to [0, 1]. Images without a label file are background.

Names come from a data YAML at the top of the folder, else LabelImg's classes.txt, else darknet's obj.names.
Splits come from folder names (images/train/, train/images/, train_zip/train/: splits.by_folders), else a seeded
split.
"""
from __future__ import annotations

import math
from pathlib import Path

import yaml

from .files import is_image
from .records import Box, Found, Report, Sample
from .splits import by_folders

TITLE = 'YOLO'
NAME_FILES = ('classes.txt', 'obj.names')
NOT_LABELS = {'classes.txt', 'readme.txt', 'train.txt', 'val.txt', 'valid.txt', 'test.txt', 'trainval.txt'}


def _label_candidates(image: Path, src: Path) -> list[Path]:
    parts = image.relative_to(src).parts
    out = []
    if 'images' in parts[:-1]:  # YOLOv5's rule: the last /images/ becomes /labels/
        i = len(parts) - 2 - parts[:-1][::-1].index('images')
        out.append(src.joinpath(*parts[:i], 'labels', *parts[i + 1:]).with_suffix('.txt'))
    out.append(image.with_suffix('.txt'))  # LabelImg: beside the image
    return out


def _label_files(src: Path, files: list[Path]) -> list[Path]:
    """Text files that are labels: under a labels/ folder, or in a folder with images (but list/name files)."""
    image_dirs = {p.parent for p in files if is_image(p)}
    out = []
    for p in files:
        if p.suffix.lower() != '.txt':
            continue
        in_labels = 'labels' in p.relative_to(src).parts[:-1]
        if in_labels and p.name != 'classes.txt' or p.parent in image_dirs and p.name.lower() not in NOT_LABELS:
            out.append(p)
    return out


def looks_like(src: Path, files: list[Path]) -> bool:
    return bool(_label_files(src, files)) or any(p.name in NAME_FILES for p in files)


def names_from_yaml(path: Path, report: Report) -> list[str] | None:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        report.problem(path, f'cannot be read as YAML ({e})', 'malformed YAML')
        return None
    names = data.get('names') if isinstance(data, dict) else None
    return None if names is None else names_list(names, path, report)


def names_list(names, path, report: Report) -> list[str] | None:
    """A data YAML's names (a list, or a dict of ids 0..n-1) as a list; a problem if it is neither."""
    if isinstance(names, dict) and sorted(names) == list(range(len(names))):
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        report.problem(path, f'names must be a list or a dict with ids 0..n-1, not {names!r}', 'malformed YAML')
        return None
    return [str(n) for n in names]


def _names(src: Path, files: list[Path], data_yaml: Path | None, report: Report) -> tuple[list[str] | None, str]:
    if data_yaml is not None:
        yamls = [data_yaml]
    else:
        yamls = [p for p in files if p.parent == src and p.suffix.lower() in ('.yaml', '.yml')]
    found = {}
    for p in yamls:
        names = names_from_yaml(p, report)
        if names is not None:
            found[p] = names
    for name_file in NAME_FILES:
        if found:
            break
        for p in files:
            if p.name == name_file:
                try:
                    found[p] = [line.strip() for line in p.read_text().splitlines() if line.strip()]
                except (OSError, UnicodeDecodeError) as e:
                    report.problem(p, f'cannot be read ({e})', 'unreadable file')
    if not found:
        return None, ''
    (first, names), *others = found.items()
    for p, other in others:
        if other != names:
            report.problem(p, f'names {other} differ from those of {report.name(first)} {names}; pass --names '
                           'or --data', 'names')
    return names, report.name(first)


def _read_label(label: Path, sample: Sample, report: Report) -> None:
    try:
        text = label.read_text()
    except (OSError, UnicodeDecodeError) as e:
        report.problem(label, f'cannot be read ({e})', 'unreadable file', sample=sample)
        return
    for n, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        where = f'line {n}'
        if not tokens:
            continue
        if len(tokens) != 5 and (len(tokens) < 7 or len(tokens) % 2 == 0):
            report.problem(label, f'{where}: {len(tokens)} columns; expected 5 (class x y w h) or a polygon '
                           '(class x1 y1 x2 y2 x3 y3 ...)', 'bad label line', drops='box')
            continue
        try:
            cls, values = float(tokens[0]), [float(t) for t in tokens[1:]]
        except ValueError:
            report.problem(label, f'{where}: {line.strip()!r} is not numbers', 'bad label line', drops='box')
            continue
        if not cls.is_integer() or cls < 0:
            report.problem(label, f'{where}: class {tokens[0]!r} is not a class id (0, 1, ...)', 'unknown class',
                           drops='box')
            continue
        if not all(math.isfinite(v) and 0 <= v <= 1 for v in values):
            report.problem(label, f'{where}: coordinates outside [0, 1] ({" ".join(tokens[1:])}); YOLO labels are '
                           'normalized by the image size', 'coordinates outside [0, 1]', drops='box')
            continue
        if len(tokens) == 5 and (values[2] == 0 or values[3] == 0):
            report.warn(label, f'{where}: box of zero width or height is degenerate; skipped', 'degenerate box')
            continue
        sample.boxes.append(Box(int(cls), tuple(tokens[1:]), where, normalized=True))


def read(src: Path, files: list[Path], report: Report) -> Found:
    """src: the folder, or its data YAML (names from it)."""
    data_yaml = src if src.is_file() else None
    src = src.parent if src.is_file() else src
    images = [p for p in files if is_image(p)]
    labels = _label_files(src, files)
    if not labels:  # all background: not a YOLO dataset (--format yolo on something else)
        return Found([], what=f'{TITLE}: {len(images)} images, no label files')
    label_set = set(labels)
    samples, used = [], set()
    for image in images:
        label = next((c for c in _label_candidates(image, src) if c in label_set), None)
        sample = Sample(image, label)
        if label is not None:
            used.add(label)
            _read_label(label, sample, report)
        samples.append(sample)
    for orphan in sorted(label_set - used):
        report.problem(orphan, f'label file without an image (orphan): no image named {orphan.stem}.* for it',
                       'orphan label')
    names, names_from = _names(src, files, data_yaml, report)
    background = sum(s.annotation is None for s in samples)
    how = by_folders(samples, src, report)
    return Found(samples, names=names, names_from=names_from, split_how=how,
                 what=f'{TITLE}: {len(images)} images, {len(labels)} label files ({background} images without one: '
                      'background)')
