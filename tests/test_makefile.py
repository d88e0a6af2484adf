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
    assert cmd[cmd.index('--hyp') + 1] == 'hyp.scratch-low.yaml,configs/hyps/eiou.yaml'
    cmd = train_command('HYP=my/base.yaml', 'VARIANT=my/v.yaml')
    assert cmd[cmd.index('--hyp') + 1] == 'my/base.yaml,my/v.yaml'


def data_commands(*args, env=None):
    """The make_dataset.py lines of `make -n data ...` (-W: as if the script changed, so BCCD's stamp is stale)."""
    import os
    r = subprocess.run(['make', '-n', '-W', 'scripts/make_dataset.py', *args], cwd=PROJECT, capture_output=True,
                       text=True, check=True, env={**os.environ, **(env or {})})
    return [shlex.split(line) for line in r.stdout.splitlines() if 'scripts/make_dataset.py' in line]


def test_make_data_src_name_converts_src_into_name():
    assert data_commands('data', 'SRC=x', 'NAME=y') == [['.venv/bin/python', 'scripts/make_dataset.py',
                                                         '--src', 'x', '--name', 'y']]
    (cmd,) = data_commands('data', 'SRC=my data/', 'NAME=y', 'DATASET_ARGS=--names cat,dog --skip-bad')
    assert cmd[2:] == ['--src', 'my data/', '--name', 'y', '--names', 'cat,dog', '--skip-bad']


def test_make_data_src_without_name_leaves_the_name_to_src():
    """NAME's default (exp) and a NAME from the environment name runs, not datasets: make_dataset.py then names
    the dataset after SRC's folder or file."""
    import make_dataset
    assert data_commands('data', 'SRC=some/where/pets/') == [['.venv/bin/python', 'scripts/make_dataset.py',
                                                            '--src', 'some/where/pets/']]
    assert data_commands('data', 'SRC=x', env={'NAME': 'run3'})[0][2:] == ['--src', 'x']
    assert make_dataset.default_name(PROJECT / 'scripts') == 'scripts'


def test_make_data_without_src_is_bccd_and_train_needs_it_only_for_bccd():
    bccd = ['.venv/bin/python', 'scripts/make_dataset.py', '--name', 'BCCD', '--data', 'configs/data/bccd.yaml',
            '--yaml', 'configs/data/bccd.yaml']
    assert data_commands('data') == [bccd]
    assert data_commands('train') == [bccd] and data_commands('val') == [bccd]
    assert data_commands('train', 'DATA=configs/data/mine.yaml') == []
    assert data_commands('val', 'DATA=configs/data/mine.yaml') == []
    assert data_commands('detect', 'SOURCE_IMAGES=my/pictures') == []
    assert data_commands('train', 'SRC=somewhere') == [bccd]  # SRC is for make data alone


def test_make_train_fine_tunes_yolov5n_by_default_and_empty_weights_train_from_scratch():
    cmd = train_command()
    assert cmd[cmd.index('--weights') + 1] == 'yolov5n.pt' and cmd[cmd.index('--hyp') + 1] == 'hyp.scratch-low.yaml'
    cmd = train_command('WEIGHTS=')
    assert cmd[cmd.index('--weights') + 1] == ''


def test_make_train_first_copies_the_released_weights_from_shared():
    shared = PROJECT.parent / 'shared' / 'weights' / 'yolov5n.pt'
    if not shared.exists():
        pytest.skip('needs ../shared/weights/yolov5n.pt')
    out = make_n('train', '-W', '../shared/weights/yolov5n.pt')  # as if the copy were out of date
    assert 'scripts/copy_weights.py ../shared/weights/yolov5n.pt --to weights' in out
    assert 'copy_weights' not in make_n('train', 'WEIGHTS=runs/train/exp/weights/best.pt', '-W',
                                        '../shared/weights/yolov5n.pt')
