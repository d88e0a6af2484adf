"""Shared fixtures: a patched tree built from the PyPI baseline, a tiny dataset, helpers to run scripts."""
import os
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
