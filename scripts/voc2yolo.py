#!/usr/bin/env python3
"""Convert a Pascal VOC dataset (e.g. BCCD) to YOLO labels, split by its own ImageSets.

    python scripts/voc2yolo.py --data configs/data/bccd.yaml             # BCCD, found automatically
    python scripts/voc2yolo.py --src path/to/VOC --data my.yaml --dest datasets/mine

Output: DEST/images/<split>/*.jpg and DEST/labels/<split>/*.txt for split in train/val/test.
Class ids follow the `names` of the data YAML. Bad boxes are repaired (clipped to the image) or
skipped with a warning naming the file: a label written here is always valid.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
SPLITS = ('train', 'val', 'test')
SPLIT_FRACTIONS = (0.7, 0.2, 0.1)  # used only for a VOC folder without ImageSets
SPLIT_SEED = 0
BCCD_GIT = 'https://github.com/Shenggan/BCCD_Dataset.git'
MIN_BOX_PIXELS = 1.0  # a box thinner than this after clipping carries no signal


@dataclass
class Stats:
    images: Counter = field(default_factory=Counter)  # split -> images
    boxes: dict = field(default_factory=dict)  # split -> Counter(class name -> boxes)
    skipped: Counter = field(default_factory=Counter)  # reason -> boxes
    clipped: int = 0
    warnings: list = field(default_factory=list)


def warn(stats: Stats, msg: str) -> None:
    stats.warnings.append(msg)
    print(f'voc2yolo: warning: {msg}', file=sys.stderr)


def find_source(user_path: str | None) -> Path:
    """The VOC folder: the user's path, else ../shared/datasets/BCCD, else a clone of the public repo."""
    if user_path:
        path = Path(user_path).expanduser()
        if not (path / 'Annotations').is_dir():
            raise SystemExit(f'voc2yolo: error: {path} has no Annotations/ folder (not a Pascal VOC dataset)')
        return path
    shared = PROJECT.parent / 'shared' / 'datasets' / 'BCCD'
    if (shared / 'Annotations').is_dir():
        return shared
    cache = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'yolov5-overlay' / 'BCCD_Dataset'
    if not (cache / 'BCCD' / 'Annotations').is_dir():
        print(f'voc2yolo: cloning {BCCD_GIT} into {cache}')
        shutil.rmtree(cache, ignore_errors=True)
        if subprocess.run(['git', 'clone', '--depth', '1', BCCD_GIT, str(cache)]).returncode:
            raise SystemExit(f'voc2yolo: error: BCCD not found locally and {BCCD_GIT} could not be cloned; '
                             'pass --src PATH to a copy of its BCCD/ folder')
    return cache / 'BCCD'


def read_splits(src: Path) -> tuple[dict[str, list[str]], str]:
    main = src / 'ImageSets' / 'Main'
    if all((main / f'{s}.txt').exists() for s in SPLITS):
        splits = {s: [x.strip() for x in (main / f'{s}.txt').read_text().split() if x.strip()] for s in SPLITS}
        return splits, f'ImageSets/Main ({", ".join(f"{s} {len(v)}" for s, v in splits.items())})'
    stems = sorted(p.stem for p in (src / 'Annotations').glob('*.xml'))
    random.Random(SPLIT_SEED).shuffle(stems)
    n_train = round(len(stems) * SPLIT_FRACTIONS[0])
    n_val = round(len(stems) * SPLIT_FRACTIONS[1])
    splits = {'train': stems[:n_train], 'val': stems[n_train:n_train + n_val], 'test': stems[n_train + n_val:]}
    return splits, (f'no ImageSets/Main: deterministic split {"/".join(str(f) for f in SPLIT_FRACTIONS)} '
                    f'with seed {SPLIT_SEED}')


def image_for(src: Path, stem: str, xml_name: str | None) -> Path | None:
    folder = src / 'JPEGImages'
    if xml_name and (folder / xml_name.strip()).exists():
        return folder / xml_name.strip()
    for ext in ('.jpg', '.jpeg', '.png', '.JPG', '.JPEG', '.PNG'):
        if (folder / f'{stem}{ext}').exists():
            return folder / f'{stem}{ext}'
    return None


def image_size(root: ET.Element, image: Path) -> tuple[float, float]:
    try:
        w = float(root.findtext('size/width'))
        h = float(root.findtext('size/height'))
        if w > 0 and h > 0:
            return w, h
    except (TypeError, ValueError):
        pass
    from PIL import Image  # the XML lies or is silent: measure the image
    with Image.open(image) as im:
        return float(im.width), float(im.height)


def convert_annotation(xml_file: Path, image: Path, names: list[str], stats: Stats) -> tuple[list[str], Counter]:
    """YOLO label lines for one VOC file, and the per-class count of the boxes kept."""
    root = ET.parse(xml_file).getroot()
    w, h = image_size(root, image)
    lines, kept = [], Counter()
    for i, obj in enumerate(root.iter('object')):
        name = (obj.findtext('name') or '').strip()
        if name not in names:
            warn(stats, f'{xml_file.name}: object {i} has unknown class {name!r} (valid: {names}); skipped')
            stats.skipped['unknown class'] += 1
            continue
        try:
            box = [float(obj.findtext(f'bndbox/{k}')) for k in ('xmin', 'ymin', 'xmax', 'ymax')]
        except (TypeError, ValueError):
            warn(stats, f'{xml_file.name}: object {i} ({name}) has a missing or non-numeric bndbox; skipped')
            stats.skipped['unreadable box'] += 1
            continue
        x1, y1, x2, y2 = box
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
        cx1, cy1, cx2, cy2 = min(max(x1, 0), w), min(max(y1, 0), h), min(max(x2, 0), w), min(max(y2, 0), h)
        if cx2 - cx1 < MIN_BOX_PIXELS or cy2 - cy1 < MIN_BOX_PIXELS:
            warn(stats, f'{xml_file.name}: object {i} ({name}) box {box} is degenerate inside the '
                 f'{w:g}x{h:g} image; skipped')
            stats.skipped['degenerate box'] += 1
            continue
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            stats.clipped += 1
        xc, yc, bw, bh = (cx1 + cx2) / 2 / w, (cy1 + cy2) / 2 / h, (cx2 - cx1) / w, (cy2 - cy1) / h
        lines.append(f'{names.index(name)} {xc:.6f} {yc:.6f} {bw:.6f} {bh:.6f}')
        kept[name] += 1
    return lines, kept


def convert(src: Path, dest: Path, names: list[str]) -> Stats:
    stats = Stats()
    splits, how = read_splits(src)
    print(f'voc2yolo: {src} -> {dest}; splits from {how}')
    for split in SPLITS:
        (dest / 'images' / split).mkdir(parents=True, exist_ok=True)
        (dest / 'labels' / split).mkdir(parents=True, exist_ok=True)
        stats.boxes[split] = Counter()
        for stem in splits[split]:
            xml_file = src / 'Annotations' / f'{stem}.xml'
            if not xml_file.exists():
                warn(stats, f'{stem}: listed in the {split} split but {xml_file} is missing; skipped')
                continue
            root_name = ET.parse(xml_file).getroot().findtext('filename')
            image = image_for(src, stem, root_name)
            if image is None:
                warn(stats, f'{xml_file.name}: no image for it in {src / "JPEGImages"}; skipped')
                continue
            lines, kept = convert_annotation(xml_file, image, names, stats)
            target = dest / 'images' / split / image.name
            if not target.exists():
                _link_or_copy(image, target)
            (dest / 'labels' / split / f'{image.stem}.txt').write_text(''.join(x + '\n' for x in lines))
            stats.images[split] += 1
            stats.boxes[split].update(kept)
    return stats


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # no extra disk when on the same filesystem
    except OSError:
        shutil.copy2(src, dst)


def summary(stats: Stats, names: list[str]) -> str:
    rows = [f'{"split":<6} {"images":>6} ' + ' '.join(f'{n:>10}' for n in names)]
    for split in SPLITS:
        rows.append(f'{split:<6} {stats.images[split]:>6} ' + ' '.join(f'{stats.boxes[split][n]:>10}' for n in names))
    skipped = ', '.join(f'{v} {k}' for k, v in stats.skipped.items()) or 'none'
    rows.append(f'boxes skipped: {skipped}; boxes clipped to the image: {stats.clipped}')
    return '\n'.join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--src', help='Pascal VOC folder (default: ../shared/datasets/BCCD, else clone BCCD from GitHub)')
    p.add_argument('--data', type=Path, default=PROJECT / 'configs' / 'data' / 'bccd.yaml',
                   help='data YAML giving the class names (their order is the class id)')
    p.add_argument('--dest', type=Path, default=PROJECT / 'datasets' / 'BCCD', help='output folder')
    opt = p.parse_args(argv)
    names = yaml.safe_load(opt.data.read_text())['names']
    names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    stats = convert(find_source(opt.src), opt.dest, names)
    print(summary(stats, names))
    return 0


if __name__ == '__main__':
    sys.exit(main())
