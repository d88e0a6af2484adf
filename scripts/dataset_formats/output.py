"""Writing the converted dataset and its data YAML, all or nothing.

The dataset is built in a hidden folder beside the destination and renamed into place once complete; an existing
destination is moved aside first and deleted after. The YAML goes through a temporary file and os.replace(),
after the dataset. Any error (or Ctrl-C) on the way removes what was built and puts the old dataset back.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import yaml
from tqdm import tqdm

from . import images
from .records import SPLITS, Sample

KEEP_ON_REPLACE = ('images', 'labels')  # what a converted dataset holds (plus dot files such as make's stamp)


class OutputError(Exception):
    pass


def check_destination(dest: Path, sources: list[Path]) -> None:
    """Refuse to replace anything that is not a dataset this script wrote, or that holds the source."""
    dest = dest.resolve()
    for src in sources:
        src = src.resolve()
        if src == dest or dest in src.parents or src in dest.parents:
            raise OutputError(f'the destination {dest} and the source {src} overlap; choose another --name/--dest')
    if dest.exists():
        if not dest.is_dir():
            raise OutputError(f'{dest} exists and is not a folder')
        foreign = sorted(p.name for p in dest.iterdir() if p.name not in KEEP_ON_REPLACE and not p.name.startswith('.'))
        if foreign:
            raise OutputError(f'{dest} exists and is not a converted dataset (it holds {", ".join(foreign[:5])}); '
                              'remove it or choose another --name/--dest')


def _remove_leftovers(dest: Path) -> None:
    """Folders of a conversion that was killed (.NAME.tmp-PID, .NAME.old-PID) whose process is gone."""
    for p in dest.parent.glob(f'.{dest.name}.*-*'):
        kind, _, pid = p.name[len(dest.name) + 2:].rpartition('-')
        if kind in ('tmp', 'old') and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _refuse_overwrite(src: Path, dst: Path) -> None:
    if dst.exists():  # the checks make output names unique; never overwrite (e.g. a case-insensitive disk)
        raise OutputError(f'{dst} would be written twice (from {src}); nothing written')


def _link_or_copy(src: Path, dst: Path) -> bool:
    _refuse_overwrite(src, dst)
    try:
        os.link(src, dst)  # no extra disk when on the same filesystem
        return True
    except OSError:
        shutil.copy2(src, dst)
        return False


def _place_image(s: Sample, dst: Path) -> str:
    """Write s's image to dst; returns how: 'linked', 'copied', 'restored' or 'end marker'."""
    if s.repair == images.RESTORE:
        _refuse_overwrite(s.image, dst)
        images.write_restored(s.image, dst)
        return 'restored'
    if s.repair == images.END_MARKER:
        _refuse_overwrite(s.image, dst)
        images.copy_with_end_marker(s.image, dst)
        return 'end marker'
    return 'linked' if _link_or_copy(s.image, dst) else 'copied'


def write(samples: list[Sample], dest: Path, yaml_path: Path | None, yaml_text: str | None) -> Counter:
    """Build dest from the samples and write the YAML, atomically. Returns how many images were written how:
    Counter(linked=, copied=, restored=, 'end marker'=)."""
    dest = Path(dest).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(dest)
    pid = os.getpid()
    tmp, old = dest.parent / f'.{dest.name}.tmp-{pid}', dest.parent / f'.{dest.name}.old-{pid}'
    tmp_yaml = yaml_path.parent / f'.{yaml_path.name}.tmp-{pid}' if yaml_text is not None else None
    done = Counter()
    moved_old = placed = False
    try:
        splits = {s.split for s in samples} | {'train', 'val'}  # YOLOv5 needs both keys
        for split in SPLITS:
            if split in splits:
                (tmp / 'images' / split).mkdir(parents=True)
                (tmp / 'labels' / split).mkdir(parents=True)
        for s in tqdm(samples, desc='writing', unit='img', disable=None, leave=False):
            done[_place_image(s, tmp / 'images' / s.split / s.image.name)] += 1
            (tmp / 'labels' / s.split / f'{s.image.stem}.txt').write_text(''.join(x + '\n' for x in s.lines))
        if tmp_yaml is not None:
            tmp_yaml.parent.mkdir(parents=True, exist_ok=True)
            tmp_yaml.write_text(yaml_text)
        if dest.exists():
            dest.rename(old)
            moved_old = True
        tmp.rename(dest)
        placed = True
        if tmp_yaml is not None:
            os.replace(tmp_yaml, yaml_path)
    except BaseException:
        if placed:
            shutil.rmtree(dest, ignore_errors=True)
        if moved_old:
            old.rename(dest)
        shutil.rmtree(tmp, ignore_errors=True)
        if tmp_yaml is not None:
            tmp_yaml.unlink(missing_ok=True)
        raise
    if moved_old:
        shutil.rmtree(old, ignore_errors=True)
    return done


def _scalar(text: str) -> str:
    """A YAML scalar for a class name: plain when YAML reads it back unchanged, else double-quoted."""
    try:
        if yaml.safe_load(f'k: {text}  # c') == {'k': text}:
            return text
    except yaml.YAMLError:
        pass
    return json.dumps(text, ensure_ascii=False)


def yaml_text(*, name: str, path_value: str, names: list[str], header: list[str], counts: dict,
              class_boxes: Counter) -> str:
    """The data YAML: a comment header (how it was made), path, train/val[/test] and names (id -> name).
    counts: split -> (images, boxes, background images)."""
    lines = [f'# {line}'.encode('utf-8', 'backslashreplace').decode() for line in header]  # a non-UTF-8 path
    lines.append(f'path: {_scalar(path_value)}')
    for split in SPLITS:
        images, boxes, background = counts.get(split, (0, 0, 0))
        if split == 'test' and not images:
            lines.append('# no test split')
            continue
        note = f'{images} images, {boxes} boxes' + (f', {background} background' if background else '')
        lines.append(f'{split}: images/{split}'.ljust(19) + f'  # {note}')  # aligned as in bccd.yaml
    lines.append('names:')
    lines += [f'  {i}: {_scalar(n)}  # {class_boxes[i]} boxes' for i, n in enumerate(names)]
    text = '\n'.join(lines) + '\n'
    data = yaml.safe_load(text)  # what YOLOv5 will read
    assert data['names'] == dict(enumerate(names)) and data['path'] == path_value, (name, data)
    return text
