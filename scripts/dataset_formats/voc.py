"""Pascal VOC: one XML per image (<annotation> with <filename>, <size>, <object><name> and <bndbox>), any layout.

XMLs and images are found wherever they are under the source (Annotations/ + JPEGImages/, annotations/ +
images/, nested folders, or all in one folder). An XML's image is the one named by its <filename>, else the one
with its stem (the one beside the XML, or in its split folder, when several have that name).
ImageSets/Main/{train,val,test,trainval}.txt give the splits when present, else split folders (train/, test/,
...: splits.by_folders).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path, PureWindowsPath

from tqdm import tqdm

from .files import by_name, by_stem, is_image
from .records import Box, Found, Report, Sample
from .splits import by_folders, split_folder

TITLE = 'Pascal VOC'
LIST_NAMES = ('train', 'val', 'test', 'trainval')


def _is_annotation(path: Path) -> bool:
    try:
        with open(path, 'rb') as f:
            return b'<annotation' in f.read(4096)
    except OSError:
        return False


def looks_like(src: Path, files: list[Path]) -> bool:
    return any(p.suffix.lower() == '.xml' and _is_annotation(p) for p in files)


def _stated_size(root: ET.Element) -> tuple[float, float] | None:
    try:
        w, h = float(root.findtext('size/width')), float(root.findtext('size/height'))
    except (TypeError, ValueError):
        return None
    return (w, h) if w > 0 and h > 0 else None  # LabelImg writes 0x0 at times: then the image's own size


def _nearest(xml: Path, found: list[Path], src: Path) -> list[Path]:
    """Of several images with one name (train/ and test/ may both hold a 0001.jpg): the one beside the XML, else
    those in the XML's split folder; all of them if neither narrows it down."""
    beside = [p for p in found if p.parent == xml.parent]
    if beside:
        return beside
    own = split_folder(xml, src)
    return [p for p in found if own and split_folder(p, src) == own] or found


def _match_image(xml: Path, root: ET.Element, names: dict, stems: dict, src: Path, report: Report) -> Path | None:
    stated = (root.findtext('filename') or '').strip()
    base = PureWindowsPath(stated).name  # 'JPEGImages\\a.jpg' and 'a/b.jpg' alike
    found = names.get(base, []) if base else []
    if not found:  # wrong or missing <filename>: by stem
        found = sorted({p for stem in {xml.stem, Path(base).stem} - {''} for p in stems.get(stem, [])})
    if len(found) > 1:
        found = _nearest(xml, found, src)
    if len(found) == 1:
        return found[0]
    if not found:
        report.problem(xml, f'no image for it: its <filename> is {stated!r} and no image is named {xml.stem}.* '
                       'anywhere under the source', 'annotation without image')
    else:
        report.problem(xml, f'{len(found)} candidate images: {", ".join(report.name(p) for p in found)}; '
                       'image file names must be unique', 'ambiguous image')
    return None


def _objects(xml: Path, root: ET.Element, sample: Sample, report: Report) -> None:
    for i, obj in enumerate(root.findall('object')):
        name = (obj.findtext('name') or '').strip()
        where = f'object {i} ({name})'
        if not name:
            report.problem(xml, f'object {i} has no <name>', 'unreadable box', drops='box')
            continue
        try:
            box = tuple(float(obj.findtext(f'bndbox/{k}')) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
        except (TypeError, ValueError):
            report.problem(xml, f'{where} has a missing or non-numeric <bndbox>', 'unreadable box', drops='box')
            continue
        sample.boxes.append(Box(name, box, where))


def _image_sets(files: list[Path], xml_stems: set, report: Report) -> tuple[dict, str | None]:
    """stem -> split from ImageSets/Main ('trainval' when val is to be cut out of it), and how, for the log."""
    lists = defaultdict(list)
    used = defaultdict(list)
    for p in files:
        if p.suffix == '.txt' and p.stem in LIST_NAMES and p.parent.parts[-2:] == ('ImageSets', 'Main'):
            try:
                lists[p.stem] += [(line.split()[0], p) for line in p.read_text().splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as e:
                report.problem(p, f'cannot be read ({e})', 'unreadable file')
    if 'train' in lists and 'val' in lists:
        plan = {'train': 'train', 'val': 'val', 'test': 'test'}
    elif 'trainval' in lists:
        plan = {'trainval': 'trainval', 'test': 'test'}
    elif 'train' in lists:  # train (+ test) only: val is cut out of train (splits.assign)
        plan = {'train': 'train', 'test': 'test'}
    else:
        if lists:
            report.warn('ImageSets/Main', f'only {", ".join(f"{k}.txt" for k in lists)}: not used')
        return {}, None
    split_of = {}
    for list_name, split in plan.items():
        for stem, file in lists.get(list_name, []):
            if stem in split_of and split_of[stem] != split:
                report.problem(file, f'{stem!r} is also listed in {used[stem][0]}', 'split overlap')
                continue
            split_of[stem] = split
            used[stem].append(report.name(file))
            if stem not in xml_stems:
                report.problem(file, f'lists {stem!r} but there is no {stem}.xml', 'annotation without image')
    how = 'ImageSets/Main (' + ', '.join(f'{k} {len(lists[k])}' for k in plan if k in lists) + ')'
    return split_of, how


def read(src: Path, files: list[Path], report: Report) -> Found:
    xmls = [p for p in files if p.suffix.lower() == '.xml']
    images = [p for p in files if is_image(p)]
    names, stems = by_name(images), by_stem(images)
    samples = []
    for xml in tqdm(xmls, desc='reading XML', unit='file', disable=None, leave=False):
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as e:
            report.problem(xml, f'malformed XML ({e})', 'malformed XML')
            continue
        except OSError as e:
            report.problem(xml, f'cannot be read ({e})', 'unreadable file')
            continue
        if root.tag != 'annotation':
            report.warn(xml, f'not a Pascal VOC annotation (root element <{root.tag}>); ignored')
            continue
        image = _match_image(xml, root, names, stems, src, report)
        if image is None:
            continue
        sample = Sample(image, xml, size=_stated_size(root))
        _objects(xml, root, sample, report)
        samples.append(sample)
    matched = {s.image for s in samples}
    split_of, how = _image_sets(files, {p.stem for p in xmls}, report)
    if how:
        unlisted = [s for s in samples if s.annotation.stem not in split_of]
        if unlisted:
            report.warn('ImageSets/Main', f'{len(unlisted)} annotations are in none of its lists and are left out '
                        f'(e.g. {", ".join(report.name(s.annotation) for s in unlisted[:3])})')
        samples = [s for s in samples if s.annotation.stem in split_of]
        for s in samples:
            s.split = split_of[s.annotation.stem]
    else:
        how = by_folders(samples, src, report, lambda s: (s.image, s.annotation))
    xml_stems = {p.stem for p in xmls}  # an image whose XML had a problem is not unused: the problem says it
    unused = sorted(p for p in set(images) - matched if p.stem not in xml_stems)
    if unused:
        report.warn('images', f'{len(unused)} images have no XML and are left out '
                    f'(e.g. {", ".join(report.name(p) for p in unused[:3])})')
    return Found(samples, split_how=how, what=f'{TITLE}: {len(xmls)} XML files, {len(images)} images')
