"""Shared fixtures: a patched tree built from the PyPI baseline, a tiny dataset, helpers to run scripts."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / 'scripts'))

PY = sys.executable
# Offline, quiet and reproducible runs of the stock scripts.
SCRIPT_ENV = {**os.environ, 'PYTHONWARNINGS': 'default', 'WANDB_MODE': 'disabled', 'CUDA_VISIBLE_DEVICES': '',
              'OMP_NUM_THREADS': '2'}


def run_apply(*args, check=True):
    """scripts/apply.py as a user runs it; returns the CompletedProcess."""
    r = subprocess.run([PY, str(PROJECT / 'scripts' / 'apply.py'), '--source', 'pypi', *map(str, args)],
                       capture_output=True, text=True)
    if check and r.returncode:
        raise AssertionError(f'apply.py failed ({r.returncode}):\n{r.stdout}\n{r.stderr}')
    return r


def run_script(tree, script, *args, timeout=600):
    """Run a stock YOLOv5 script of `tree`; fail the test with its output if it fails."""
    r = subprocess.run([PY, str(Path(tree) / script), *map(str, args)], capture_output=True, text=True,
                       env=SCRIPT_ENV, timeout=timeout, cwd=tree)
    if r.returncode:
        raise AssertionError(f'{script} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}')
    return r


@pytest.fixture(scope='session')
def tree(tmp_path_factory):
    """The patched tree (pypi baseline + overlay + patches), built once per session."""
    dest = tmp_path_factory.mktemp('build') / 'yolov5'
    run_apply('--dest', dest)
    return dest


@pytest.fixture(scope='session')
def tiny_data(tmp_path_factory):
    """data.yaml of a tiny synthetic dataset (16 train, 4 val, 4 test images)."""
    from make_tiny_dataset import make_dataset
    return make_dataset(tmp_path_factory.mktemp('tiny'), images=16, size=128)


@pytest.fixture(scope='session')
def yolo(tree):
    """The built tree importable in this process (models.*, utils.*), as train.py sees it."""
    sys.path.insert(0, str(tree))
    import logging
    logging.getLogger('yolov5').setLevel(logging.WARNING)  # parse_model's layer table
    return tree


def train_interrupted_then_resumed(tree, data, cfg, run, epochs=3, img=128):
    """train.py killed right after its first checkpoint, then --resume: asserts that exactly the remaining
    epochs are trained and the run finishes; returns the run folder (weights/best.pt is usable)."""
    import torch
    args = [PY, str(Path(tree) / 'train.py'), '--data', str(data), '--cfg', str(cfg), '--weights', '', '--img', str(img),
            '--epochs', str(epochs), '--batch', '8', '--workers', '0', '--project', str(run.parent), '--name', run.name,
            '--noval', '--noplots']
    p = subprocess.Popen(args, cwd=tree, env=SCRIPT_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    last = run / 'weights' / 'last.pt'
    deadline, size = time.time() + 600, -1
    while p.poll() is None and time.time() < deadline:  # first checkpoint written completely
        if last.exists() and last.stat().st_size == size > 0:
            break
        size = last.stat().st_size if last.exists() else -1
        time.sleep(0.25)
    p.send_signal(signal.SIGKILL)
    _, err = p.communicate()
    results = run / 'results.csv'
    assert results.exists(), err[-3000:]
    done_before = len(results.read_text().splitlines()) - 1
    assert 1 <= done_before < epochs, 'the run was not interrupted mid-way'
    saved_epoch = torch.load(last, weights_only=False)['epoch']  # last epoch the checkpoint holds
    run_script(tree, 'train.py', '--resume', last)
    assert len(results.read_text().splitlines()) - 1 - done_before == epochs - 1 - saved_epoch  # the rest, once
    assert torch.load(last, weights_only=False)['epoch'] == -1  # finished and stripped
    return run
