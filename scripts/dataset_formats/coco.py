"""COCO detection JSON: "images" (id, file_name, width, height), "annotations" (image_id, category_id, bbox
[x, y, w, h] in pixels, iscrowd) and "categories" (id, name).

One file: its images' split folders (train/, test/, ...), else a seeded split. Several (instances_train2017.json,
instances_val2017.json, ...): one split each, named by the file name, else by a split folder it is in (Roboflow's
train/_annotations.coco.json). Crowd annotations (iscrowd: 1) are skipped and counted. Class ids follow
the category ids in increasing order. An image is looked for at file_name relative to the JSON's folder, to an
images/ folder there or at the source root, else by its name anywhere under the source.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

from .files import by_name, is_image
from .records import Box, Found, Report, Sample
from .splits import by_folders, split_folder, split_of

TITLE = 'COCO JSON'
PEEK_BYTES = 1 << 20
ORDER = ('train', 'trainval', 'val', 'test')  # of the splits in the log


def _peek(path: Path) -> bool:
    try:
        with open(path, 'rb') as f:
            head = f.read(PEEK_BYTES)
    except OSError:
        return False
    return b'"images"' in head or b'"annotations"' in head


def json_files(files: list[Path]) -> list[Path]:
    """instances_*.json when there are any (COCO's own names: not captions_*, person_keypoints_*), else every
    JSON that looks like COCO."""
    jsons = [p for p in files if p.suffix.lower() == '.json']
    return [p for p in jsons if p.name.startswith('instances_')] or [p for p in jsons if _peek(p)]


def looks_like(src: Path, files: list[Path]) -> bool:
    return bool(json_files(files))


def search_root(json_file: Path) -> Path:
    """Where images of a lone JSON are looked for: its folder, or above annotations/ (COCO's own layout)."""
    parent = json_file.parent
    return parent.parent if parent.name.lower() in ('annotations', 'annotation', 'labels') else parent


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _load(path: Path, report: Report) -> dict | None:
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        report.problem(path, f'malformed JSON ({e})', 'malformed JSON')
        return None
    except OSError as e:
        report.problem(path, f'cannot be read ({e})', 'unreadable file')
        return None
    missing = [k for k in ('images', 'annotations', 'categories') if not isinstance(data, dict) or
               not isinstance(data.get(k), list)]
    if missing:
        report.problem(path, f'not a COCO detection file: no {", ".join(repr(k) for k in missing)} list',
                       'malformed JSON')
        return None
    return data


def _splits(jsons: list[Path], root: Path, report: Report) -> dict[Path, str | None]:
    if len(jsons) == 1:
        return {jsons[0]: None}
    out, first = {}, {}
    for j in jsons:
        split = split_of(j.stem) or (split_folder(j, root) or (None,))[0]
        if split is None:
            report.problem(j, 'cannot tell its split from its name or its folders: with several JSON files each must '
                           'say train, val or test (instances_train2017.json), or be in a folder so named '
                           '(train/_annotations.coco.json); or convert one file', 'split')
        elif split in first:
            report.problem(j, f'{split} split again (already from {report.name(first[split])})', 'split')
        else:
            first[split] = j
            out[j] = split
    return out


def _categories(loaded: dict[Path, dict], report: Report) -> dict[int, str]:
    cats = {}
    for j, data in loaded.items():
        for c in data['categories']:
            if not isinstance(c, dict) or not _is_id(c.get('id')) or not str(c.get('name', '')).strip():
                report.problem(j, f'category {c!r} has no id or no name', 'malformed JSON')
                continue
            cid, name = c['id'], str(c['name']).strip()
            if cats.get(cid, name) != name:
                report.problem(j, f'category id {cid} is {name!r} here but {cats[cid]!r} in another file', 'categories')
                continue
            cats[cid] = name
    return cats


def _locate(file_name: str, json_file: Path, root: Path, split: str | None, index: dict):
    """(image path, None) or (None, why not)."""
    rel = Path(file_name.replace('\\', '/'))
    for base in (json_file.parent, json_file.parent / 'images', root, root / 'images'):
        if (base / rel).is_file():
            return base / rel, None
    hits = index.get(rel.name, [])
    if len(hits) > 1 and split:  # the same name in train/ and val/: the one in this split's folder
        hits = [p for p in hits if (split_folder(p, root) or (None,))[0] == split] or hits
    if len(hits) == 1:
        return hits[0], None
    if hits:
        return None, f'{len(hits)} candidates: {", ".join(str(p.relative_to(root)) for p in hits)}'
    return None, 'not found next to the JSON, in an images/ folder or by name under the source'


def read(src: Path, files: list[Path], report: Report) -> Found:
    root = search_root(src) if src.is_file() else src
    jsons = [src] if src.is_file() else json_files(files)
    index = by_name(p for p in files if is_image(p))
    loaded = {j: d for j in jsons if (d := _load(j, report)) is not None}
    splits = _splits(list(loaded), root, report)
    cats = _categories(loaded, report)
    samples, crowd = [], 0
    for j, data in loaded.items():
        if j not in splits:
            continue
        images = {}
        for im in data['images']:
            if not isinstance(im, dict) or not _is_id(im.get('id')) or not isinstance(im.get('file_name'), str):
                report.problem(j, f'image entry {str(im)[:80]} has no id or file_name', 'malformed JSON')
            elif im['id'] in images:
                report.problem(j, f'image id {im["id"]} appears twice in "images"', 'malformed JSON')
            else:
                images[im['id']] = im
        boxes = defaultdict(list)
        for ann in data['annotations']:
            aid = ann.get('id') if isinstance(ann, dict) else None
            where = f'annotation id {aid}'
            if not isinstance(ann, dict):
                report.problem(j, f'annotation {str(ann)[:80]} is not an object', 'malformed JSON', drops='box')
            elif ann.get('iscrowd'):
                crowd += 1
            elif not _is_id(ann.get('image_id')) or ann['image_id'] not in images:
                report.problem(j, f'{where}: its image_id {ann.get("image_id")!r} is not in "images"',
                               'annotation without image', drops='box')
            elif not _is_id(ann.get('category_id')) or ann['category_id'] not in cats:
                report.problem(j, f'{where}: its category_id {ann.get("category_id")!r} is not in "categories"',
                               'unknown class', drops='box')
            else:
                bbox = ann.get('bbox')
                try:
                    x, y, w, h = (float(v) for v in bbox)
                except (TypeError, ValueError):
                    report.problem(j, f'{where}: bbox {bbox!r} is not [x, y, width, height]', 'unreadable box',
                                   drops='box')
                    continue
                boxes[ann['image_id']].append(
                    Box(cats[ann['category_id']], (x, y, x + w, y + h), f'{where} (bbox [{x:g}, {y:g}, {w:g}, {h:g}])'))
        for iid, im in images.items():
            path, why = _locate(im['file_name'], j, root, splits[j], index)
            if path is None:
                report.problem(j, f'image id {iid}: {im["file_name"]!r} {why}', 'annotation without image',
                               unit=(j, iid))
                continue
            try:
                size = (float(im['width']), float(im['height']))
                size = size if min(size) > 0 else None
            except (KeyError, TypeError, ValueError):
                size = None
            samples.append(Sample(path, j, boxes.get(iid, []), split=splits[j], size=size, where=f'image id {iid}'))
    if crowd:
        report.warn('annotations', f'{crowd} crowd annotations (iscrowd: 1) skipped', 'crowd annotation', count=crowd)
    names = []  # by category id; two ids of one name are one class
    for cid in sorted(cats, key=lambda c: (str(type(c)), c)):
        if cats[cid] in names:
            report.warn('categories', f'category id {cid} repeats the name {cats[cid]!r}: one class')
        else:
            names.append(cats[cid])
    if len(splits) > 1:
        per_file = Counter(s.annotation for s in samples)
        how = '; '.join(f'{splits[j]}: {report.name(j)} ({per_file[j]} images)'
                        for j in sorted(splits, key=lambda j: ORDER.index(splits[j])))
    else:  # one file: its images' split folders, if any
        how = by_folders(samples, root, report)
    n_images = sum(len(d['images']) for d in loaded.values())
    return Found(samples, names=names, names_from='the categories, by id', split_how=how,
                 what=f'{TITLE}: {", ".join(report.name(j) for j in jsons)}, {n_images} images')
