"""The commands `make` would run (make -n: nothing runs), as users type them."""
import shlex
import subprocess

import pytest
from conftest import PROJECT


def make_n(*args):
    r = subprocess.run(['make', '-n', *args], cwd=PROJECT, capture_output=True, text=True, check=True)
    return r.stdout.replace('\\\n', ' ')  # recipes continue lines with a backslash


def train_command(*args):
    lines = [line for line in make_n('train', *args).splitlines() if 'yolov5/train.py' in line]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


@pytest.mark.parametrize('device, gpus', [('', 0), ('cpu', 0), ('0', 1), ('0,1', 2), ('0,1,2,3', 4)])
def test_make_train_launches_ddp_with_one_process_per_gpu(device, gpus):
    cmd = train_command(f'DEVICE={device}')
    train = cmd.index('yolov5/train.py')
    if gpus > 1:  # DDP through torch's launcher, as YOLOv5 documents; one GPU or the CPU is plain python
        assert cmd[1:train] == ['-m', 'torch.distributed.run', '--nproc_per_node', str(gpus)]
    else:
        assert cmd[1:train] == []
    assert cmd[cmd.index('--device') + 1] == device


def test_make_train_layers_the_variant_on_the_base():
    cmd = train_command('VARIANT=eiou')
    assert cmd[cmd.index('--hyp') + 1] == 'hyp.scratch-low.yaml,configs/hyps/scratch-short.yaml,configs/hyps/eiou.yaml'
    cmd = train_command('HYP=my/base.yaml', 'VARIANT=my/v.yaml')
    assert cmd[cmd.index('--hyp') + 1] == 'my/base.yaml,my/v.yaml'
