"""Readers for the dataset formats scripts/make_dataset.py converts, and what they share.

    records.py   Sample, Box, Report: what a reader returns and how problems are recorded
    files.py     walking a source folder; image files
    voc.py       Pascal VOC XML, any folder layout
    coco.py      COCO detection JSON, one file or one per split
    yolo.py      a folder already in YOLO format
    checks.py    checks every format shares (images decode, classes, boxes, unique output names)
    images.py    decoding images; restoring a cut-off one, appending a missing JPEG end marker
    splits.py    the source's own splits (lists, JSON per split, split folders at any depth), or a seeded one
    output.py    writing datasets/NAME and its data YAML, all or nothing
"""
from __future__ import annotations

from pathlib import Path

from . import coco, voc, yolo

FORMATS = {'voc': voc, 'coco': coco, 'yolo': yolo}


class FormatError(Exception):
    pass


def source_root(src: Path) -> Path:
    """The folder searched for a source given as a file (a COCO JSON, a YOLO data YAML)."""
    if src.is_file():
        return coco.search_root(src) if src.suffix.lower() == '.json' else src.parent
    return src


def detect(src: Path, files: list[Path]) -> str:
    """The format of src, or FormatError saying why it cannot tell."""
    if src.is_file():
        kind = {'.json': 'coco', '.yaml': 'yolo', '.yml': 'yolo'}.get(src.suffix.lower())
        if kind is None:
            raise FormatError(f'{src}: a source file must be a COCO .json or a YOLO data .yaml; '
                              'else give the dataset folder')
        return kind
    found = [name for name, module in FORMATS.items() if module.looks_like(src, files)]
    if len(found) == 1:
        return found[0]
    valid = '|'.join(FORMATS)
    if not found:
        raise FormatError(f'{src}: no Pascal VOC XML, COCO JSON or YOLO label files found; '
                          f'is this the dataset folder? (--format {valid} to force one)')
    titles = ' and '.join(FORMATS[f].TITLE for f in found)
    raise FormatError(f'{src} looks like {titles}: pass --format {valid} to choose')
