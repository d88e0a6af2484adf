"""The checks every format shares: file names, images that decode, known classes, sane boxes, unique outputs.

Each check records problems (bad input) and warnings (repaired or skipped) in the Report; none raises.
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from . import images
from .records import Report, Sample, utf8_ok

MIN_BOX_PIXELS = 1.0  # a box thinner than this after clipping carries no signal
MIN_IMAGE_PIXELS = 10  # YOLOv5's loader rejects smaller images


def check_file_names(samples: list[Sample], report: Report) -> None:
    """Output names come from image names: they must be valid UTF-8 (and so must the annotation files')."""
    for s in samples:
        for path in (s.image, s.annotation):
            if path is not None and not utf8_ok(str(path)):
                report.problem(path, 'file name is not valid UTF-8; rename it', 'non-UTF-8 name', sample=s)


def decode_images(samples: list[Sample], report: Report) -> None:
    """Open every image with PIL, verify and decode it; record its size. One that decodes only in part is restored
    (with a warning naming it); one that does not decode at all is a problem."""
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:  # PIL decodes without the GIL
        results = list(tqdm(pool.map(images.decode, [s.image for s in samples]), total=len(samples),
                            desc='checking images', unit='img', disable=None, leave=False))
    for s, d in zip(samples, results):
        if d.error:  # here, after the threads: restoring needs Pillow's global switch for truncated files
            d = images.restorable(s.image, d.error)
        if d.error:
            report.problem(s.image, f'cannot be decoded as an image, not even in part ({d.error})', 'bad image',
                           sample=s)
        elif min(d.size) < MIN_IMAGE_PIXELS:
            report.problem(s.image, f'image is {d.size[0]}x{d.size[1]}: YOLOv5 needs {MIN_IMAGE_PIXELS} pixels or more',
                           'bad image', sample=s)
        else:
            s.image_size, s.repair = d.size, d.repair
            if d.repair == images.RESTORE:
                report.warn(s.image, d.note)
    _warn_end_markers([s for s in samples if s.repair == images.END_MARKER], report)


def _warn_end_markers(fixed: list[Sample], report: Report) -> None:
    """One warning for them all: a camera that appends data does so to every picture."""
    if fixed:
        names = ', '.join(report.name(s.image) for s in fixed[:3]) + (', ...' if len(fixed) > 3 else '')
        report.warn('images', f'{len(fixed)} JPEGs do not end with the JPEG end marker ({names}): copied with the '
                    'marker appended, else YOLOv5 re-saves them in place (through a hard link: in the source)')


def resolve_classes(samples: list[Sample], fixed: list[str] | None, fixed_from: str, stated: list[str] | None,
                    stated_from: str, report: Report) -> tuple[list[str], str]:
    """The class names and their order; every box gets its class id, or a problem. Returns (names, where from)."""
    used_names = sorted({b.cls for s in samples for b in s.boxes if isinstance(b.cls, str)})
    used_ids = {b.cls for s in samples for b in s.boxes if isinstance(b.cls, int)}
    if fixed is not None:
        names, source = fixed, fixed_from
    elif stated is not None:
        names, source = stated, stated_from
    elif used_ids:
        names, source = [str(i) for i in range(max(used_ids) + 1)], 'the class ids (no names found)'
        report.warn('names', 'no data YAML, classes.txt or obj.names: classes are named by their ids; '
                    'pass --names to name them')
    else:
        names, source = used_names, 'the data, sorted by name'
    index = {n: i for i, n in enumerate(names)}
    valid = ', '.join(names) or '(none)'
    for s in samples:
        for b in list(s.boxes):
            if isinstance(b.cls, str) and b.cls in index:
                b.cls_id = index[b.cls]
            elif isinstance(b.cls, int) and 0 <= b.cls < len(names):
                b.cls_id = b.cls
            elif isinstance(b.cls, str):
                report.problem(s.annotation, f'{b.where}: unknown class {b.cls!r} (names from {source}: {valid})',
                               'unknown class', sample=s, box=b)
            else:
                ids = ', '.join(f'{i}: {n}' for i, n in enumerate(names)) or 'none'
                report.problem(s.annotation, f'{b.where}: unknown class id {b.cls} (names from {source}: {ids})',
                               'unknown class', sample=s, box=b)
    return names, source


def _corners(values) -> str:
    return '(' + ', '.join(f'{v:g}' for v in values) + ')'


def check_boxes(samples: list[Sample], report: Report) -> None:
    """Pixel boxes (VOC, COCO) against their image: clip what sticks out, skip zero-size ones, refuse nonsense.
    Writes each sample's YOLO label lines (YOLO boxes are taken as their reader checked them)."""
    for s in samples:
        size = s.size or s.image_size
        if s.size and s.image_size and (round(s.size[0]), round(s.size[1])) != tuple(s.image_size):
            report.warn(s.annotation, f'states size {s.size[0]:g}x{s.size[1]:g} but {report.name(s.image)} is '
                        f'{s.image_size[0]}x{s.image_size[1]}; boxes are normalized by the stated size')
        for b in list(s.boxes):
            if b.normalized:
                s.lines.append(' '.join([str(b.cls_id), *b.values]))
                continue
            if size is None:  # undecodable image and no stated size: already a problem
                continue
            w, h = size
            x1, y1, x2, y2 = b.values
            box = f'box (xmin, ymin, xmax, ymax) {_corners(b.values)}'
            if not all(math.isfinite(v) for v in b.values):
                report.problem(s.annotation, f'{b.where}: {box} is not a number', 'unreadable box', sample=s, box=b)
                continue
            if x2 < x1 or y2 < y1:
                report.problem(s.annotation, f'{b.where}: {box} has negative size (max < min)',
                               'negative size box', sample=s, box=b)
                continue
            if x2 == x1 or y2 == y1:
                report.warn(s.annotation, f'{b.where}: {box} is degenerate (zero width or height); skipped',
                            'degenerate box')
                s.boxes.remove(b)
                continue
            if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
                report.problem(s.annotation, f'{b.where}: {box} is entirely outside the {w:g}x{h:g} image',
                               'box outside the image', sample=s, box=b)
                continue
            cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
            if cx2 - cx1 < MIN_BOX_PIXELS or cy2 - cy1 < MIN_BOX_PIXELS:
                report.warn(s.annotation, f'{b.where}: {box} is degenerate (under {MIN_BOX_PIXELS:g} pixel) inside '
                            f'the {w:g}x{h:g} image; skipped', 'degenerate box')
                s.boxes.remove(b)
                continue
            if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
                report.clipped += 1
            xc, yc, bw, bh = (cx1 + cx2) / 2 / w, (cy1 + cy2) / 2 / h, (cx2 - cx1) / w, (cy2 - cy1) / h
            s.lines.append(f'{b.cls_id} {xc:.6f} {yc:.6f} {bw:.6f} {bh:.6f}')


def check_unique_outputs(samples: list[Sample], report: Report, group, with_bad=True) -> None:
    """Two samples must not land on one output name (images/SPLIT/STEM.*, labels/SPLIT/STEM.txt): within each
    group(sample) (a split; '*' for the samples of a seeded split, so that the check does not depend on the seed)."""
    groups = defaultdict(list)
    for s in samples:
        if with_bad or not s.bad:
            groups[(group(s), s.image.stem)].append(s)
    for (split, stem), clash in groups.items():
        if len(clash) < 2:
            continue
        for s in clash:
            others = [g for g in clash if g is not s]
            if all(g.image == s.image for g in others):
                prefix = f'{s.where}: ' if s.where else ''
                users = ', '.join(report.name(g.annotation) + (f' ({g.where})' if g.where else '') for g in others)
                report.problem(s.annotation, f'{prefix}its image {report.name(s.image)} is also the image of {users}',
                               'duplicate image', sample=s)
            else:
                where = 'the same output name' + (f' in {split}' if split != '*' else '')
                files = ', '.join(report.name(g.image) for g in others)
                report.problem(s.image, f'{where} ({stem}) as {files}: image file names must be unique',
                               'duplicate image name', sample=s)


def report_class_spread(samples: list[Sample], names: list[str], report: Report) -> None:
    """A class with boxes in only one split (or none) cannot be trained and evaluated: say so."""
    splits = sorted({s.split for s in samples}, key=('train', 'val', 'test').index)
    seen = defaultdict(set)
    for s in samples:
        for b in s.boxes:
            seen[b.cls_id].add(s.split)
    for i, name in enumerate(names):
        if not seen[i]:
            report.warn(f'class {name!r}', 'no boxes in any split')
        elif len(seen[i]) == 1 and len(splits) > 1:
            (only,) = seen[i]
            others = ', '.join(x for x in splits if x != only)
            report.warn(f'class {name!r}', f'boxes only in {only} (none in {others})')
