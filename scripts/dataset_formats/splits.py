"""Which split each sample goes to: the source's own (ImageSets, JSON file names, split folders) or a seeded one.

A folder is a split when its whole name (any case) is train, val, valid, validation or test (also training,
testing, and these with a year: val2017), at any depth below the source, whatever its parents are named."""
from __future__ import annotations

import math
import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Callable, Iterable

from .records import SPLITS, Report, Sample

DEFAULT_FRACTIONS = (0.7, 0.2, 0.1)
DEFAULT_SEED = 0
_ALIASES = {'train': 'train', 'training': 'train', 'val': 'val', 'valid': 'val', 'validation': 'val',
            'minival': 'val', 'test': 'test', 'testing': 'test', 'trainval': 'trainval'}


def split_of(text: str) -> str | None:
    """'instances_train2017' -> 'train', 'valid' -> 'val', 'trainval35k' -> 'trainval'; None if no word says."""
    found = {_ALIASES[m.group(1)] for token in re.split(r'[^a-z0-9]+', text.lower())
             if (m := re.fullmatch(r'([a-z]+?)\d*k?', token)) and m.group(1) in _ALIASES}
    return found.pop() if len(found) == 1 else None


# A folder is a split only when that is its whole name (but for a year: val2017): not 'training_data', 'contest'.
_FOLDER = re.compile(r'(train|training|val|valid|validation|test|testing)\d*')


def folder_name_split(name: str) -> str | None:
    """'train', 'Valid', 'val2017' -> their split; None for any other folder name."""
    m = _FOLDER.fullmatch(name.lower())
    return _ALIASES[m.group(1)] if m else None


def split_folder(path: Path, root: Path) -> tuple[str, Path] | None:
    """(split, folder): the innermost folder between root and path whose name is a split; None if none is."""
    try:
        parts = Path(path).relative_to(root).parts[:-1]
    except ValueError:  # not under root (a COCO file_name with '..')
        return None
    for i in range(len(parts), 0, -1):
        if split := folder_name_split(parts[i - 1]):
            return split, Path(root, *parts[:i])
    return None


def by_folders(samples: list[Sample], root: Path, report: Report,
               paths: Callable[[Sample], Iterable[Path | None]] = lambda s: (s.image,)) -> str | None:
    """Give each sample the split its folders name (the first of paths(s) that is in such a folder, at any depth
    under root). Returns how, for the log; None (nothing set) when no folder names a split, or when every image is
    in val or test folders: nothing would be left to train on."""
    found = {}
    for s in samples:
        hit = next(filter(None, (split_folder(p, root) for p in paths(s) if p is not None)), None)
        if hit:
            found[s] = hit
    if not found:
        return None
    splits = {split for split, _ in found.values()}
    if 'train' not in splits and len(found) == len(samples):
        report.warn('splits', f'every image is in a folder named {" or ".join(sorted(splits))}: with nothing to train '
                    'on, these folders are not used as splits')
        return None
    for s, (split, _) in found.items():
        s.split = split
    return describe_folders(found.values(), report)


def describe_folders(hits: Iterable[tuple[str, Path]], report: Report) -> str:
    """'train: folder train_zip/train (120 images); test: folder test_zip/test (44 images)'."""
    folders = defaultdict(Counter)
    for split, folder in hits:
        folders[split][folder] += 1
    out = []
    for split in (s for s in SPLITS if s in folders):
        names = [report.name(f) for f in sorted(folders[split])]
        where = (f'folder {names[0]}' if len(names) == 1 else f'folders {", ".join(names)}' if len(names) <= 3
                 else f'{len(names)} folders ({", ".join(names[:3])}, ...)')
        out.append(f'{split}: {where} ({sum(folders[split].values())} images)')
    return '; '.join(out)


def parse_fractions(text: str) -> tuple[float, float, float]:
    """'0.7,0.2,0.1' (or '7,2,1', or '0.8,0.2' for no test split) -> fractions that sum to 1."""
    try:
        parts = [float(x) for x in text.split(',')]
    except ValueError:
        parts = []
    if len(parts) not in (2, 3) or not all(math.isfinite(p) and p >= 0 for p in parts) or parts[0] <= 0:
        raise ValueError(f'--split {text!r}: expected train,val[,test] fractions such as 0.7,0.2,0.1')
    parts += [0.0] * (3 - len(parts))
    return tuple(p / sum(parts) for p in parts)


def describe(fractions) -> str:
    return '/'.join(f'{f:g}' for f in fractions)


def seeded(samples: list[Sample], fractions, seed: int) -> dict[str, list[Sample]]:
    """Shuffle by image name with `seed`, then cut: round(n * train), round(n * val), the rest test."""
    order = sorted(samples, key=lambda s: (s.image.name, str(s.image)))
    random.Random(seed).shuffle(order)
    n_train = round(len(order) * fractions[0])
    n_val = min(round(len(order) * fractions[1]), len(order) - n_train)
    return {'train': order[:n_train], 'val': order[n_train:n_train + n_val], 'test': order[n_train + n_val:]}


def assign(samples: list[Sample], source_how: str | None, fractions, seed: int, forced: bool) -> str:
    """Set every sample's split; returns how, for the log and the YAML. forced: --split given (re-split all)."""
    seeded_how = f'seeded {describe(fractions)} split (seed {seed})'
    if forced or not any(s.split for s in samples):
        for split, part in seeded(samples, fractions, seed).items():
            for s in part:
                s.split = split
        if forced and source_how:
            return f"{seeded_how} (--split given: the source's own splits ignored)"
        return seeded_how + ('' if forced else ' (the source has no splits)')
    how = source_how or 'the source'
    pooled_name = 'trainval'
    if not any(s.split in ('val', 'trainval') for s in samples):  # train (and test) only: val is cut out of train
        pooled_name = 'train'
        for s in samples:
            s.split = 'trainval' if s.split == 'train' else s.split
    pooled = [s for s in samples if s.split == 'trainval']
    if pooled:  # VOC trainval.txt, COCO instances_trainval*.json, a train split alone: carve val out of it
        ft, fv = fractions[0], fractions[1] or DEFAULT_FRACTIONS[1]
        for split, part in seeded(pooled, (ft / (ft + fv), fv / (ft + fv), 0), seed).items():
            for s in part:
                s.split = split
        if pooled_name == 'trainval':
            how += f'; trainval cut into train/val {ft / (ft + fv):.2f}/{fv / (ft + fv):.2f} (seed {seed})'
        else:
            how += f'; val: cut out of train (seeded, {fv / (ft + fv):.0%}, seed {seed})'
    loose = [s for s in samples if s.split is None]
    if loose:  # some samples have a split, some not: the latter get a seeded one
        for split, part in seeded(loose, fractions, seed).items():
            for s in part:
                s.split = split
        how += f'; {len(loose)} images outside any split: {seeded_how}'
    assert all(s.split in SPLITS for s in samples)
    return how
