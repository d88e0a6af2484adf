"""Shared fixtures: the patched tree built from the real v7.0 commit, a tiny dataset, helpers to run scripts."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / 'scripts'))

PY = sys.executable
# Offline, quiet and reproducible runs of the stock scripts.
SCRIPT_ENV = {**os.environ, 'PYTHONWARNINGS': 'default', 'WANDB_MODE': 'disabled', 'CUDA_VISIBLE_DEVICES': '',
              'OMP_NUM_THREADS': '2'}


# The real v7.0 commit from ../shared's bundle (or YOLOV5_REPO); without either, offline, only the PyPI package is
# at hand, and the tests say so: that tree is not v7.0's code.
HAVE_V70 = (PROJECT.parent / 'shared' / 'upstream' / 'yolov5-v7.0.bundle').exists() or bool(os.environ.get('YOLOV5_REPO'))
SOURCE = 'git' if HAVE_V70 else 'pypi'
if not HAVE_V70:
    print('tests: no ../shared/upstream bundle and no YOLOV5_REPO: building from the PyPI package, not v7.0',
          file=sys.stderr)


def run_apply(*args, check=True, source=SOURCE):
    """scripts/apply.py as a user runs it; returns the CompletedProcess."""
    r = subprocess.run([PY, str(PROJECT / 'scripts' / 'apply.py'), '--source', source, *map(str, args)],
                       capture_output=True, text=True)
    if check and r.returncode:
        raise AssertionError(f'apply.py failed ({r.returncode}):\n{r.stdout}\n{r.stderr}')
    return r


def tree_lines(tree, pattern, skip=()):
    """'path:line' of every line of the tree's .py files (but those named in skip) that matches the regex."""
    import re
    return [f'{p.relative_to(tree)}:{n}' for p in sorted(Path(tree).rglob('*.py')) if p.name not in skip
            for n, line in enumerate(p.read_text(errors='ignore').splitlines(), 1) if re.search(pattern, line)]


def run_script(tree, script, *args, timeout=600):
    """Run a stock YOLOv5 script of `tree`; fail the test with its output if it fails."""
    r = subprocess.run([PY, str(Path(tree) / script), *map(str, args)], capture_output=True, text=True,
                       env=SCRIPT_ENV, timeout=timeout, cwd=tree)
    if r.returncode:
        raise AssertionError(f'{script} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}')
    return r


@pytest.fixture(scope='session')
def tree(tmp_path_factory):
    """The patched tree (v7.0 baseline + overlay + patches), built once per session."""
    dest = tmp_path_factory.mktemp('build') / 'yolov5'
    run_apply('--dest', dest)
    return dest


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
    """data.yaml of a tiny synthetic dataset (16 train, 4 val, 4 test images)."""
    from make_tiny_dataset import make_dataset
    return make_dataset(tmp_path_factory.mktemp('tiny'), images=16, size=128)


def segmentation_data(tiny_data, dest):
    """The tiny detection dataset with each box as a 4-point polygon: a YOLO segmentation dataset."""
    src = tiny_data.parent
    shutil.copytree(src / 'images', dest / 'images')
    for labels in (src / 'labels').rglob('*.txt'):
        out = dest / 'labels' / labels.relative_to(src / 'labels')
        out.parent.mkdir(parents=True, exist_ok=True)
        rows = []
        for line in labels.read_text().split('\n'):
            if line.strip():
                c, x, y, w, h = line.split()
                x, y, w, h = map(float, (x, y, w, h))
                corners = (x - w / 2, y - h / 2, x + w / 2, y - h / 2, x + w / 2, y + h / 2, x - w / 2, y + h / 2)
                rows.append(' '.join([c, *(f'{v:.6f}' for v in corners)]))
        out.write_text('\n'.join(rows) + '\n')
    data = dest / 'data.yaml'
    data.write_text(tiny_data.read_text().replace(str(src), str(dest)))
    return data


def classification_data(dest, per_class=8, size=32):
    """An ImageFolder dataset: squares and discs on noise, train/val/test."""
    import numpy as np
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(0)
    for split in ('train', 'val', 'test'):
        for name in ('square', 'disc'):
            (dest / split / name).mkdir(parents=True)
            for i in range(per_class):
                im = Image.fromarray(rng.integers(0, 80, (size, size, 3), dtype=np.uint8))
                a, b = sorted(rng.integers(4, size - 4, 2))
                box = (a, a, max(b, a + 8), max(b, a + 8))
                draw = ImageDraw.Draw(im)
                (draw.rectangle if name == 'square' else draw.ellipse)(box, fill=(200, 200, 60))
                im.save(dest / split / name / f'{i}.png')
    return dest


@pytest.fixture(scope='session')
def seg_data(tiny_data, tmp_path_factory):
    """data.yaml of the tiny dataset as a segmentation dataset."""
    return segmentation_data(tiny_data, tmp_path_factory.mktemp('seg'))


@pytest.fixture(scope='session')
def cls_data(tmp_path_factory):
    """An ImageFolder classification dataset (train/val/test, two classes)."""
    return classification_data(tmp_path_factory.mktemp('cls') / 'data')


@pytest.fixture(scope='session')
def yolo(tree):
    """The built tree importable in this process (models.*, utils.*), as train.py sees it."""
    sys.path.insert(0, str(tree))
    import logging
    logging.getLogger('yolov5').setLevel(logging.WARNING)  # parse_model's layer table
    return tree


def crash_train(tree, event, epoch, *train_args):
    """train.py killed right after `event` ('results' or 'checkpoint') of `epoch` (tests/crash_train.py)."""
    r = subprocess.run([PY, str(PROJECT / 'tests' / 'crash_train.py'), str(tree), event, str(epoch),
                        *map(str, train_args)], capture_output=True, text=True, env=SCRIPT_ENV, cwd=tree, timeout=600)
    assert r.returncode == 17, f'train.py was not interrupted ({r.returncode}):\n{r.stderr[-3000:]}'
    return r


def train_interrupted_then_resumed(tree, data, cfg, run, epochs=3, img=128, event='checkpoint', at_epoch=0):
    """train.py killed after `event` of epoch `at_epoch`, then --resume: asserts that every epoch appears once in
    results.csv and the run finishes; returns the run folder (weights/best.pt is usable)."""
    import torch
    if str(tree) not in sys.path:
        sys.path.insert(0, str(tree))  # checkpoints pickle the tree's model classes
    crash_train(tree, event, at_epoch, '--data', data, '--cfg', cfg, '--weights', '', '--img', img, '--epochs', epochs,
                '--batch', 8, '--workers', 0, '--project', run.parent, '--name', run.name, '--noval', '--noplots')
    results, last = run / 'results.csv', run / 'weights' / 'last.pt'
    assert [row_epoch(r) for r in results.read_text().splitlines()[1:]] == list(range(at_epoch + 1))
    assert torch.load(last, weights_only=False)['epoch'] == at_epoch - (event == 'results')  # last complete epoch
    run_script(tree, 'train.py', '--resume', last)
    assert [row_epoch(r) for r in results.read_text().splitlines()[1:]] == list(range(epochs))  # each epoch once
    assert torch.load(last, weights_only=False)['epoch'] == -1  # finished and stripped
    return run


def row_epoch(line):
    return int(float(line.split(',')[0]))
