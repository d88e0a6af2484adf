#!/usr/bin/env python3
"""Convert a Pascal VOC dataset (e.g. BCCD) to YOLO labels: scripts/make_dataset.py --format voc, kept for
existing users.

    python scripts/voc2yolo.py --data configs/data/bccd.yaml             # BCCD, found automatically
    python scripts/voc2yolo.py --src path/to/VOC --data my.yaml --dest datasets/mine

Output: DEST/images/<split>/ and DEST/labels/<split>/*.txt; splits from ImageSets/Main when present, else seeded.
Class ids follow the `names` of the data YAML, which is not rewritten. Any VOC layout works (XMLs and images
anywhere under --src). Bad input stops the conversion with status 2, writing nothing (--skip-bad: converts the
rest); a box sticking out of the image is clipped and a zero-size one skipped, with a warning naming the file.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import make_dataset
from dataset_formats import voc
from dataset_formats.files import walk
from dataset_formats.records import SPLITS, Report
from dataset_formats.splits import DEFAULT_FRACTIONS, DEFAULT_SEED, assign

PROJECT = make_dataset.PROJECT
SPLIT_FRACTIONS = DEFAULT_FRACTIONS  # used only for a VOC folder without ImageSets
SPLIT_SEED = DEFAULT_SEED
__all__ = ['SPLITS', 'SPLIT_FRACTIONS', 'SPLIT_SEED', 'find_source', 'read_splits', 'convert', 'main']


def find_source(user_path: str | None) -> Path:
    """The VOC folder: the user's path, else ../shared/datasets/BCCD, else a clone of the public repo."""
    if not user_path:
        try:
            return make_dataset.find_bccd()
        except make_dataset.ConversionError as e:
            raise SystemExit(f'voc2yolo: error: {e}')
    path = Path(user_path).expanduser()
    if not path.is_dir() or not voc.looks_like(path, walk(path)):
        raise SystemExit(f'voc2yolo: error: {path} has no Pascal VOC annotations (.xml files with an <annotation> '
                         'root) anywhere under it')
    return path


def read_splits(src: Path) -> tuple[dict[str, list[str]], str]:
    """split -> image stems, and where the split comes from (ImageSets/Main, else seeded)."""
    found = voc.read(src, walk(src), Report(src))
    how = assign(found.samples, found.split_how, SPLIT_FRACTIONS, SPLIT_SEED, forced=False)
    return {s: [x.image.stem for x in found.samples if x.split == s] for s in SPLITS}, how


def convert(src: Path, dest: Path, names: list[str], skip_bad: bool = True) -> make_dataset.Result:
    """Convert, as the original voc2yolo did: by default it never stops, leaving out what is bad with a message
    naming the file (skip_bad=False: raises make_dataset.ConversionError instead, writing nothing)."""
    return make_dataset.convert(src, dest, fmt='voc', names=list(names), names_from='the data YAML',
                                skip_bad=skip_bad, prog='voc2yolo')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--src', help='Pascal VOC folder (default: ../shared/datasets/BCCD, else clone BCCD from GitHub)')
    p.add_argument('--data', type=Path, default=PROJECT / 'configs' / 'data' / 'bccd.yaml',
                   help='data YAML giving the class names (their order is the class id); not rewritten')
    p.add_argument('--dest', type=Path, default=PROJECT / 'datasets' / 'BCCD', help='output folder')
    p.add_argument('--skip-bad', action='store_true', help='convert anyway, leaving out bad files and boxes')
    opt = p.parse_args(argv)
    src = find_source(opt.src)
    args = ['--format', 'voc', '--src', str(src), '--data', str(opt.data), '--yaml', str(opt.data),
            '--dest', str(opt.dest), '--name', opt.dest.name]
    return make_dataset.main(args + (['--skip-bad'] if opt.skip_bad else []))


if __name__ == '__main__':
    sys.exit(main())
