"""Finding files under a source folder: every file once, sorted, with image files told apart."""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

IMAGE_SUFFIXES = ('.bmp', '.jpeg', '.jpg', '.mpo', '.png', '.tif', '.tiff', '.webp')  # YOLOv5's, less dng/pfm
SKIP_DIRS = ('__MACOSX',)  # macOS zip residue: ._name files that look like images


def walk(root: Path) -> list[Path]:
    """Every file under root, sorted; hidden folders (.git, .ipynb_checkpoints) and hidden files skipped."""
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.') and d not in SKIP_DIRS)
        out += [Path(folder) / n for n in sorted(names) if not n.startswith('.')]
    return out


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def by_name(paths) -> dict[str, list[Path]]:
    index = defaultdict(list)
    for p in paths:
        index[p.name].append(p)
    return index


def by_stem(paths) -> dict[str, list[Path]]:
    index = defaultdict(list)
    for p in paths:
        index[p.stem].append(p)
    return index
