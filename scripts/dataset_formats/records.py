"""What every format reader returns: samples (an image, its boxes, its split) and a report of what is wrong.

A reader never decides what is fatal: it records problems (bad input: the conversion stops with status 2
unless --skip-bad) and warnings (repaired or skipped with a note, as a zero-size box) in the Report, and
returns only the samples it could make sense of.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ('train', 'val', 'test')


def show(path, root: Path | None = None) -> str:
    """A path for messages: relative to root when inside it; repr() when it is not valid UTF-8."""
    text = str(path)
    if root is not None:
        try:
            text = str(Path(path).relative_to(root)) if Path(path) != Path(root) else str(path)
        except ValueError:
            pass
    return text if utf8_ok(text) else repr(text)


def utf8_ok(text: str) -> bool:
    """False for names os.listdir() decoded with surrogate escapes (bytes that are not UTF-8)."""
    try:
        text.encode('utf-8')
        return True
    except UnicodeEncodeError:
        return False


@dataclass(eq=False)  # compared and hashed by identity
class Box:
    cls: str | int  # class name (VOC, COCO) or class id (YOLO)
    values: tuple  # VOC/COCO: pixel corners (x1, y1, x2, y2); YOLO: normalized x y w h, or a polygon
    where: str  # its place in the annotation file: 'object 3 (cat)', 'annotation id 17', 'line 4'
    normalized: bool = False  # True for YOLO values
    cls_id: int = -1  # set by the class check


@dataclass(eq=False)
class Sample:
    image: Path  # the source image
    annotation: Path | None  # the file its boxes come from (XML, JSON, label .txt); None: no label file
    boxes: list[Box] = field(default_factory=list)
    split: str | None = None  # from the source (ImageSets, JSON file name, split folder); None: seeded split
    size: tuple[float, float] | None = None  # (width, height) the annotation states
    image_size: tuple[int, int] | None = None  # (width, height) of the decoded image
    lines: list[str] = field(default_factory=list)  # the YOLO label lines to write
    bad: bool = False  # a problem drops the whole sample
    repair: str = ''  # how the image is written when a hard link would not do (images.RESTORE, images.END_MARKER)
    where: str = ''  # its place in a file holding many (COCO: 'image id 7'), for messages


@dataclass
class Problem:
    file: str  # as shown: relative to the source, repr() when not UTF-8
    message: str
    reason: str  # short key, counted under --skip-bad: 'unknown class', 'malformed XML', ...
    drops: str  # 'file' or 'box': what --skip-bad leaves out
    unit: object = None  # what it is about: a sample, an image entry, a file (to count what --skip-bad leaves out)

    def __str__(self):
        return f'{self.file}: {self.message}'


@dataclass
class Found:
    """A reader's result."""
    samples: list[Sample]
    names: list[str] | None = None  # class names the source states (COCO categories, YOLO YAML/classes.txt)
    names_from: str = ''  # where those names come from, for messages: 'classes.txt', 'the categories'
    split_how: str | None = None  # where the samples' splits come from; None when they have none
    what: str = ''  # one line on what was read, for the log and the YAML comment


class Report:
    """Problems and warnings of one conversion, each naming its file."""

    def __init__(self, root: Path, prog: str = 'make_dataset'):
        self.root = Path(root)
        self.prog = prog
        self.problems: list[Problem] = []
        self._seen = set()  # (file, message) of the problems: each is recorded once
        self.warnings: list[str] = []
        self.skipped = Counter()  # boxes (or crowd annotations) left out with a warning, by reason
        self.clipped = 0  # boxes clipped to the image
        self._printed = 0

    def name(self, path) -> str:
        return show(path, self.root)

    def problem(self, path, message: str, reason: str, *, sample: Sample | None = None, box: Box | None = None,
                drops: str | None = None, unit=None):
        """Bad input. With a box (or drops='box'), --skip-bad leaves out that box; else the sample, or what `unit`
        names (default: the file)."""
        file = self.name(path) if isinstance(path, Path) else str(path)
        unit = sample if sample is not None else unit if unit is not None else file
        p = Problem(file, message, reason, drops or ('box' if box is not None else 'file'), unit)
        if (file, message) not in self._seen:
            self._seen.add((file, message))
            self.problems.append(p)
        if sample is not None and box is not None:
            sample.boxes = [b for b in sample.boxes if b is not box]
        elif sample is not None:
            sample.bad = True

    def warn(self, path, message: str, reason: str | None = None, count: int = 1):
        """Repairable: the conversion goes on. reason counts what was skipped (e.g. 'degenerate box')."""
        file = self.name(path) if isinstance(path, Path) else str(path)
        self.warnings.append(f'{file}: {message}')
        if reason:
            self.skipped[reason] += count

    def flush(self):
        """Print the warnings recorded since the last flush (stderr)."""
        for w in self.warnings[self._printed:]:
            print(f'{self.prog}: warning: {w}', file=sys.stderr)
        self._printed = len(self.warnings)

    def dropped(self) -> tuple[int, int]:
        """What --skip-bad leaves out: (files or images, boxes); a box of an image left out counts as the image."""
        units = {id(p.unit) if isinstance(p.unit, Sample) else p.unit for p in self.problems if p.drops == 'file'}
        boxes = sum(p.drops == 'box' and (id(p.unit) if isinstance(p.unit, Sample) else p.unit) not in units
                    for p in self.problems)
        return len(units), boxes
