#!/usr/bin/env python3
"""Turn a detection dataset into one YOLOv5 trains on: datasets/NAME/ and configs/data/NAME.yaml.

    make data SRC=path/to/dataset [NAME=mine]
    python scripts/make_dataset.py --src path/to/dataset [--name mine] [--format voc|coco|yolo]
        [--names a,b,c | --data existing.yaml] [--split 0.7,0.2,0.1] [--seed 0] [--skip-bad]
    python scripts/make_dataset.py      # BCCD into datasets/BCCD with the names of configs/data/bccd.yaml

The format is detected: Pascal VOC (XMLs and images anywhere under SRC), COCO JSON (a file, or several: one per
split) or YOLO (images/ + labels/). Splits: the source's own (ImageSets/Main, one JSON per split, folders named
train/val/valid/test at any depth), else seeded. Everything is checked before anything is written: bad input
(malformed XML or JSON, an annotation without its image, an image that no decoder reads, a box of negative size or
outside its image, an unknown class, two images with one output name, a file name that is not UTF-8) is listed file
by file and the script exits with status 2, writing nothing; --skip-bad converts the rest. Repairable things are
warnings: a box sticking out of the image is clipped, a zero-size box skipped, a cut-off image restored (what
decodes, written as a complete image), a JPEG without its end marker copied with one. The dataset and its YAML
replace any previous ones only once complete.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dataset_formats import FORMATS, FormatError, detect, output, source_root
from dataset_formats.checks import (check_boxes, check_file_names, check_unique_outputs, decode_images,
                                    report_class_spread, resolve_classes)
from dataset_formats.files import walk
from dataset_formats.images import END_MARKER, RESTORE
from dataset_formats.records import SPLITS, Problem, Report, show
from dataset_formats.splits import DEFAULT_FRACTIONS, DEFAULT_SEED, assign, parse_fractions
from dataset_formats import yolo

PROJECT = Path(__file__).resolve().parents[1]
TREE = PROJECT / 'yolov5'  # YOLOv5 resolves a data YAML's relative `path` against its own folder
BCCD_YAML = PROJECT / 'configs' / 'data' / 'bccd.yaml'
BCCD_GIT = 'https://github.com/Shenggan/BCCD_Dataset.git'
BAD_INPUT = 2  # exit status: nothing written


class ConversionError(Exception):
    """Nothing was written. problems: each bad input, naming its file (empty for a usage error)."""

    def __init__(self, message: str, problems: list[Problem] = ()):
        super().__init__(message)
        self.problems = list(problems)


@dataclass
class Result:
    images: Counter = field(default_factory=Counter)  # split -> images
    boxes: dict = field(default_factory=dict)  # split -> Counter(class name -> boxes)
    background: Counter = field(default_factory=Counter)  # split -> images without boxes
    skipped: Counter = field(default_factory=Counter)  # reason -> boxes left out (warnings; problems with --skip-bad)
    clipped: int = 0
    repaired: Counter = field(default_factory=Counter)  # images.RESTORE / END_MARKER -> images written so
    warnings: list = field(default_factory=list)
    names: list = field(default_factory=list)
    split_how: str = ''
    dropped: tuple = (0, 0)  # (files, boxes) left out by --skip-bad
    written: Counter = field(default_factory=Counter)  # linked / copied / restored / 'end marker' images


def find_bccd() -> Path:
    """BCCD's VOC folder: ../shared/datasets/BCCD, else a clone of the public repository (cached)."""
    shared = PROJECT.parent / 'shared' / 'datasets' / 'BCCD'
    if (shared / 'Annotations').is_dir():
        return shared
    cache = Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'yolov5-overlay' / 'BCCD_Dataset'
    if not (cache / 'BCCD' / 'Annotations').is_dir():
        print(f'make_dataset: cloning {BCCD_GIT} into {cache}')
        shutil.rmtree(cache, ignore_errors=True)
        if subprocess.run(['git', 'clone', '--depth', '1', BCCD_GIT, str(cache)]).returncode:
            raise ConversionError(f'BCCD not found locally and {BCCD_GIT} could not be cloned; '
                                  'pass --src PATH to a copy of its BCCD/ folder')
    return cache / 'BCCD'


def names_from_yaml(path: Path) -> list[str]:
    report = Report(path.parent)
    names = yolo.names_from_yaml(Path(path), report)
    if names is None:
        reason = report.problems[0].message if report.problems else 'has no names'
        raise ConversionError(f'--data {path}: {reason}')
    return names


def names_from_text(text: str) -> list[str]:
    names = [n.strip() for n in text.split(',')]
    if not all(names) or len(set(names)) != len(names):
        raise ConversionError(f'--names {text!r}: expected distinct comma-separated names, e.g. cat,dog')
    return names


def yaml_path_value(dest: Path) -> str:
    """The data YAML's `path`: relative to the yolov5/ tree for a dataset inside the project, else absolute."""
    dest = dest.absolute()
    if PROJECT in dest.parents:
        return Path(os.path.relpath(dest, TREE)).as_posix()
    return dest.as_posix()


def convert(src, dest, *, fmt: str | None = None, names: list[str] | None = None, names_from: str = '',
            fractions=None, seed: int = DEFAULT_SEED, skip_bad: bool = False, yaml_path=None,
            keep_yaml: bool = False, command: str | None = None, prog: str = 'make_dataset') -> Result:
    """Convert src into dest (and yaml_path, unless None or keep_yaml). names: fixed class names (else found).
    fractions: train/val/test for a seeded split; given, it re-splits a source that has its own splits.
    Raises ConversionError, having written nothing, on bad input (unless skip_bad) or bad arguments."""
    src, dest = Path(src), Path(dest)
    yaml_path = Path(yaml_path) if yaml_path else None

    def log(message):
        print(f'{prog}: {message}')

    if not src.exists():
        raise ConversionError(f'{src}: no such file or folder')
    root = source_root(src)
    files = walk(root)
    try:
        fmt = fmt or detect(src, files)
        output.check_destination(dest, [root])
    except (FormatError, output.OutputError) as e:
        raise ConversionError(str(e))
    report = Report(root, prog)
    found = FORMATS[fmt].read(src, files, report)
    log(f'{show(src)}: {found.what}')
    report.flush()
    samples = found.samples
    if not samples and not report.problems:
        raise ConversionError(f'{show(src)}: nothing to convert as {FORMATS[fmt].TITLE}')
    check_file_names(samples, report)
    decode_images(samples, report)
    names, names_from = resolve_classes(samples, names, names_from, found.names, found.names_from, report)
    log(f'classes from {names_from}: {", ".join(names) or "none"}')
    check_boxes(samples, report)
    report.flush()
    forced = fractions is not None
    source_split = {id(s): s.split for s in samples}  # None: seeded below
    split_how = assign(samples, found.split_how, fractions or DEFAULT_FRACTIONS, seed, forced=forced)
    check_unique_outputs(samples, report, lambda s: '*' if forced else source_split[id(s)] or '*')
    check_unique_outputs(samples, report, lambda s: s.split, with_bad=False)  # clashes the seeded split made
    log(f'splits: {split_how}')
    report.flush()
    problems = sorted(report.problems, key=lambda p: p.file)  # each file's problems together, in order found
    if problems and not skip_bad:
        raise ConversionError(f'{len(problems)} problems in {show(src)}; nothing written', problems)
    result = Result(names=names, split_how=split_how, dropped=report.dropped())
    if problems:
        for p in problems:
            print(f'{prog}: skipped: {p}', file=sys.stderr)
        result.skipped.update(p.reason for p in report.problems if p.drops == 'box')
        samples = [s for s in samples if not s.bad]
        log(f'--skip-bad: left out {result.dropped[0]} files and {result.dropped[1]} boxes with problems')
    if not samples:
        raise ConversionError(f'{show(src)}: no images to convert')
    if not names:
        raise ConversionError(f'{show(src)}: no classes: no object in any annotation; pass --names')
    report_class_spread(samples, names, report)
    for s in samples:
        result.images[s.split] += 1
        result.background[s.split] += not s.lines
        result.repaired[s.repair] += bool(s.repair)
    if not result.images['val']:
        report.warn('splits', 'the val split is empty: YOLOv5 trains with one (see --split)')
    report.flush()
    result.boxes = {split: Counter(names[b.cls_id] for s in samples if s.split == split for b in s.boxes)
                    for split in SPLITS}
    result.skipped.update(report.skipped)
    result.clipped, result.warnings = report.clipped, report.warnings
    text = None
    if yaml_path and not keep_yaml:
        text = output.yaml_text(name=dest.name, path_value=yaml_path_value(dest), names=names,
                                header=_header(dest, src, found.what, names_from, result, command),
                                counts={sp: (result.images[sp], sum(result.boxes[sp].values()), result.background[sp])
                                        for sp in SPLITS},
                                class_boxes=Counter(b.cls_id for s in samples for b in s.boxes))
    result.written = output.write(samples, dest, yaml_path if text else None, text)
    return result


def _header(dest: Path, src, what: str, names_from: str, r: Result, command) -> list[str]:
    total = sum(r.images.values())
    boxes = sum(sum(c.values()) for c in r.boxes.values())
    notes = [f'{total} images ({sum(r.background.values())} background), {boxes} boxes']
    if r.skipped:
        notes.append('skipped: ' + ', '.join(f'{k}: {v}' for k, v in sorted(r.skipped.items())))
    if r.clipped:
        notes.append(f'clipped to the image: {r.clipped}')
    if r.repaired[RESTORE]:
        notes.append(f'images restored from damaged files: {r.repaired[RESTORE]}')
    if r.repaired[END_MARKER]:
        notes.append(f'JPEG end marker appended: {r.repaired[END_MARKER]}')
    if any(r.dropped):
        notes.append(f'--skip-bad left out {r.dropped[0]} files and {r.dropped[1]} boxes')
    where = ('`path` is relative to the yolov5/ tree, as YOLOv5 resolves it.' if PROJECT in dest.absolute().parents
             else '`path` is absolute: the dataset is outside the project.')
    return [f'{dest.name}: made by `{command or "make_dataset.convert()"}`',
            f'from {show(Path(src).absolute())} ({what})',
            f'classes: from {names_from}',
            f'splits: {r.split_how}',
            '; '.join(notes),
            where]


def summary(r: Result) -> str:
    width = max([10, *(len(n) + 1 for n in r.names)])
    rows = [f'{"split":<6} {"images":>6} {"background":>10} ' + ' '.join(f'{n:>{width}}' for n in r.names)]
    for split in SPLITS:
        if r.images[split]:
            rows.append(f'{split:<6} {r.images[split]:>6} {r.background[split]:>10} '
                        + ' '.join(f'{r.boxes[split][n]:>{width}}' for n in r.names))
    skipped = ', '.join(f'{k}: {v}' for k, v in sorted(r.skipped.items())) or 'none'
    rows.append(f'boxes skipped: {skipped}; boxes clipped to the image: {r.clipped}')
    rows.append(f'images restored from damaged files: {r.repaired[RESTORE]}'
                + (f'; JPEG end marker appended: {r.repaired[END_MARKER]}' if r.repaired[END_MARKER] else ''))
    return '\n'.join(rows)


def written_how(written: Counter) -> str:
    how = f'{written["linked"]} images hard-linked, {written["copied"]} copied'
    how += f', {written["restored"]} restored' if written['restored'] else ''
    return how + (f', {written["end marker"]} copied with a JPEG end marker' if written['end marker'] else '')


def default_name(src: Path) -> str:
    src = src.resolve()
    return src.stem if src.is_file() else src.name


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                epilog='Exit status 2: bad input or arguments, nothing written.')
    p.add_argument('--src', type=Path, help='dataset folder, or a COCO .json / YOLO data .yaml file '
                   '(default: BCCD, from ../shared/datasets/BCCD or its public repository)')
    p.add_argument('--name', help='writes datasets/NAME and configs/data/NAME.yaml (default: the SRC folder or file '
                   'name; BCCD without --src)')
    p.add_argument('--format', choices=list(FORMATS), help='the source format (default: detected)')
    fixed = p.add_mutually_exclusive_group()
    fixed.add_argument('--names', help='class names in id order, comma-separated; an object of any other class is '
                       'an error')
    fixed.add_argument('--data', type=Path, help='a data YAML whose names fix the classes and their order, as --names')
    p.add_argument('--split', help='train,val,test fractions of a seeded split (default 0.7,0.2,0.1 for a source '
                   'without splits; given, it re-splits any source)')
    p.add_argument('--seed', type=int, default=DEFAULT_SEED, help='seed of the split (default %(default)s)')
    p.add_argument('--skip-bad', action='store_true', help='convert anyway, leaving out the files and boxes with '
                   'problems (it says how many)')
    p.add_argument('--dest', type=Path, help='output folder (default: datasets/NAME)')
    p.add_argument('--yaml', type=Path, help='data YAML to write (default: configs/data/NAME.yaml); '
                   'if it is the --data file, it is left as it is')
    opt = p.parse_args(argv)
    prog = 'make_dataset'
    try:
        if opt.src is None and not (opt.names or opt.data):
            opt.data = BCCD_YAML
        names = names_from_text(opt.names) if opt.names else names_from_yaml(opt.data) if opt.data else None
        names_from = '--names' if opt.names else f'--data {opt.data}' if opt.data else ''
        name = opt.name or (default_name(opt.src) if opt.src else 'BCCD')
        if not name or name.startswith('.') or '/' in name or '\\' in name:
            raise ConversionError(f'--name {name!r}: give a plain name, e.g. --name mydata (NAME=mydata)')
        src = opt.src if opt.src is not None else find_bccd()
        dest = opt.dest or PROJECT / 'datasets' / name
        yaml_path = opt.yaml or (BCCD_YAML if opt.src is None else PROJECT / 'configs' / 'data' / f'{name}.yaml')
        keep = opt.data is not None and yaml_path.resolve() == opt.data.resolve()
        fractions = parse_fractions(opt.split) if opt.split else None
        print(f'{prog}: {show(src)} -> {show(dest)}' + (f' and {show(yaml_path)}' if not keep else ''))
        result = convert(src, dest, fmt=opt.format, names=names, names_from=names_from, fractions=fractions,
                         seed=opt.seed, skip_bad=opt.skip_bad, yaml_path=yaml_path, keep_yaml=keep,
                         command=shlex.join(['python', 'scripts/make_dataset.py', *map(str, argv)]), prog=prog)
    except ValueError as e:  # --split
        print(f'{prog}: error: {e}', file=sys.stderr)
        return BAD_INPUT
    except (OSError, output.OutputError) as e:  # writing failed: what was built is removed, the old dataset kept
        print(f'{prog}: error: {e}; nothing written', file=sys.stderr)
        return 1
    except ConversionError as e:
        for problem in e.problems:
            print(f'{prog}: error: {problem}', file=sys.stderr)
        print(f'{prog}: error: {e}', file=sys.stderr)
        if e.problems:
            print(f'{prog}: fix them, or pass --skip-bad to convert the rest without them '
                  '(make data ... DATASET_ARGS=--skip-bad)', file=sys.stderr)
        return BAD_INPUT
    print(summary(result))
    how = written_how(result.written)
    if keep:
        print(f'{prog}: wrote {show(dest)} ({how}); {show(yaml_path)} kept as it is (it is the --data file)')
        check_kept_yaml(yaml_path, dest, prog)
    else:
        print(f'{prog}: wrote {show(dest)} ({how}) and {show(yaml_path)}')
    data = yaml_path.absolute()
    data = data.relative_to(PROJECT) if PROJECT in data.parents else data  # make runs in the project root
    print(f'{prog}: next: make train DATA={data}')
    return 0


def check_kept_yaml(yaml_path: Path, dest: Path, prog: str) -> None:
    """A data YAML we did not write must still point at what we wrote."""
    try:
        path = yaml.safe_load(yaml_path.read_text()).get('path', '')
    except (OSError, yaml.YAMLError, AttributeError):
        path = ''
    if (TREE / str(path)).resolve() != dest.resolve():
        print(f'{prog}: warning: {show(yaml_path)} has path: {path!r}, which is not {show(dest)}', file=sys.stderr)


if __name__ == '__main__':
    sys.exit(main())
