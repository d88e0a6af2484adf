"""Checkpoints cannot run code: YOLOv5's own load, a crafted file refused by every stock script."""
import copy
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PY, SCRIPT_ENV, tree_lines


class WritesAFile:
    """Unpickling this calls open(path, 'w'): what a malicious .pt would do, harmlessly."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, 'w')


@pytest.fixture
def crafted(tmp_path):
    """(checkpoint, the file its unpickling would create) in YOLOv5's checkpoint layout."""
    marker = tmp_path / 'pwned.txt'
    torch.save({'epoch': -1, 'model': WritesAFile(marker), 'ema': None}, tmp_path / 'crafted.pt')
    return tmp_path / 'crafted.pt', marker


def yolov5_checkpoint(model):
    # what train.py saves every epoch (before strip_optimizer): half model and EMA, optimizer, fitness as numpy
    # returns it (an array of one float), a numpy scalar in the options
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    optimizer.step()  # momentum buffers, as in a real run's state
    return {'epoch': 3, 'best_fitness': np.array([0.25]), 'model': copy.deepcopy(model).half(),
            'ema': copy.deepcopy(model).half(), 'updates': 12, 'optimizer': optimizer.state_dict(),
            'opt': {'weights': '', 'hyp': {'lr0': 0.01}, 'epochs': 3, 'save_dir': 'runs/train/exp',
                    'scalar': np.float32(0.5)},
            'git': {'remote': None, 'branch': None, 'commit': None}, 'date': datetime.now().isoformat()}


def shipped_models():
    from conftest import PROJECT
    return sorted(p.name for p in (PROJECT / 'configs' / 'models').glob('*.yaml'))


def test_a_crafted_checkpoint_is_refused_and_names_what_it_needs(yolo, crafted):
    from utils.compat import load_checkpoint
    from utils.safe_load import TRUST_ENV, UntrustedCheckpoint
    ckpt, marker = crafted
    message = rf'refused to load .*crafted\.pt: it needs io\.open\..*{TRUST_ENV}=1'
    with pytest.raises(UntrustedCheckpoint, match=message):
        load_checkpoint(ckpt)
    assert not marker.exists()


def test_the_opt_in_loads_a_trusted_file(yolo, crafted, monkeypatch):
    from utils.compat import load_checkpoint
    ckpt, marker = crafted
    monkeypatch.setenv('YOLOV5_TRUST_CHECKPOINTS', '1')
    load_checkpoint(ckpt)
    assert marker.exists()  # exactly what torch.load(weights_only=False) does: only for files you trust


@pytest.mark.parametrize('cfg', ['yolov5n.yaml', 'yolov5n-seg.yaml', *shipped_models()])
def test_checkpoints_of_every_model_load(yolo, cfg, tmp_path):
    from models.yolo import Model
    from utils.compat import load_checkpoint
    from conftest import PROJECT
    path = PROJECT / 'configs' / 'models' / cfg
    model = Model(path if path.exists() else yolo / 'models' / ('segment' if '-seg' in cfg else '') / cfg, nc=3)
    torch.save(yolov5_checkpoint(model), tmp_path / 'last.pt')
    loaded = load_checkpoint(tmp_path / 'last.pt')
    assert type(loaded['model']) is type(model) and loaded['best_fitness'].tolist() == [0.25]
    expected = model.half().state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in loaded['ema'].state_dict().items())


def test_classification_checkpoints_load(yolo, tmp_path):
    import torchvision
    from models.yolo import ClassificationModel, DetectionModel
    from utils.compat import load_checkpoint
    from utils.augmentations import classify_transforms
    yolo_classifier = ClassificationModel(model=DetectionModel(yolo / 'models' / 'yolov5n.yaml'), nc=4, cutoff=10)
    yolo_classifier.transforms = classify_transforms(224)  # as classify/train.py saves it
    for model in (yolo_classifier,
                  torchvision.models.resnet18(num_classes=4), torchvision.models.efficientnet_b0(num_classes=4),
                  torchvision.models.mobilenet_v3_small(num_classes=4)):
        ckpt = {'epoch': -1, 'model': copy.deepcopy(model).half(), 'ema': None, 'optimizer': None,
                'opt': {'save_dir': Path('runs/train-cls/exp')}}  # classify/train.py saves a Path there
        torch.save(ckpt, tmp_path / 'c.pt')
        assert type(load_checkpoint(tmp_path / 'c.pt')['model']) is type(model)


def test_no_checkpoint_load_bypasses_the_allowlist(tree):
    # every torch.load of the built tree is the one in utils/safe_load.py (aws/resume.py: git baseline only,
    # and torch's own default, weights_only=True, refuses rather than runs a crafted file there)
    calls = tree_lines(tree, r'\btorch\.load\(')
    assert calls and all(c.startswith('utils/safe_load.py:') for c in calls), calls


STOCK = {  # script and arguments that load --weights first (data is checked later, or comes from tiny_data)
    'train.py': ['--cfg', 'yolov5n.yaml', '--img', 64, '--epochs', 1, '--batch', 4, '--workers', 0],
    'val.py': ['--img', 64], 'detect.py': ['--img', 64], 'export.py': ['--include', 'torchscript', '--img', 64],
    'segment/train.py': ['--cfg', 'yolov5n-seg.yaml', '--img', 64, '--epochs', 1, '--batch', 4, '--workers', 0],
    'segment/val.py': ['--img', 64], 'segment/predict.py': ['--img', 64],
    'classify/val.py': ['--img', 64], 'classify/predict.py': ['--img', 64]}


@pytest.mark.parametrize('script', [*STOCK, 'hubconf.py'])
def test_every_stock_script_refuses_the_crafted_checkpoint(tree, tiny_data, crafted, tmp_path, script):
    ckpt, marker = crafted
    if script == 'hubconf.py':
        cmd = ['-c', f'import torch; torch.hub.load({str(tree)!r}, "custom", path={str(ckpt)!r}, source="local")']
    else:
        weights = '--model' if script == 'classify/train.py' else '--weights'
        cmd = [str(tree / script), weights, str(ckpt), *map(str, STOCK[script])]
        cmd += ['--data', str(tiny_data), '--project', str(tmp_path)] if script.endswith('train.py') else []
        if script.endswith(('detect.py', 'predict.py')):
            cmd += ['--source', str(tiny_data.parent / 'images' / 'test')]
        cmd += ['--data', str(tiny_data)] if script in ('val.py', 'segment/val.py') else []
    r = subprocess.run([PY, *cmd], capture_output=True, text=True, env=SCRIPT_ENV, cwd=tree, timeout=300)
    assert r.returncode != 0 and 'refused to load' in r.stderr and 'io.open' in r.stderr, r.stderr[-3000:]
    assert not marker.exists()


class ReachesPastAMethod:
    """getattr on an allowed class, but for its internals rather than one of its methods."""

    def __reduce__(self):
        from models.yolo import Detect
        return getattr, (Detect, '__init__')


def test_getattr_reaches_only_methods_of_model_classes(yolo, tmp_path):
    from utils.compat import load_checkpoint
    from utils.safe_load import UntrustedCheckpoint
    torch.save({'model': ReachesPastAMethod()}, tmp_path / 'reach.pt')
    with pytest.raises(UntrustedCheckpoint, match="getattr.*Detect.*'__init__'"):
        load_checkpoint(tmp_path / 'reach.pt')


def test_checkpoints_of_older_yolov5_releases_load(yolo, tmp_path):
    # v6.x checkpoints pickled the detection model as models.yolo.Model (an alias of DetectionModel in v7.0)
    from models.yolo import DetectionModel
    from utils.compat import load_checkpoint
    model = DetectionModel(yolo / 'models' / 'yolov5n.yaml', nc=3)
    DetectionModel.__qualname__ = 'Model'
    try:
        torch.save({'epoch': -1, 'model': model}, tmp_path / 'v6.pt')
    finally:
        DetectionModel.__qualname__ = 'DetectionModel'
    assert 'models.yolo.Model' in torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / 'v6.pt')
    assert type(load_checkpoint(tmp_path / 'v6.pt')['model']) is DetectionModel
