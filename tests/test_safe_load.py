"""Checkpoints load as they should: every kind YOLOv5 saves, old and new (attacks: tests/test_redteam.py)."""
import copy
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PROJECT


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


def test_upstreams_released_weights_load_as_torch_loads_them(yolo):
    # ../shared/weights/yolov5n.pt: upstream's COCO-pretrained release (v6.1 era, models.yolo.Model)
    from utils.compat import load_checkpoint
    path = PROJECT.parent / 'shared' / 'weights' / 'yolov5n.pt'
    if not path.exists():
        pytest.skip('needs ../shared/weights/yolov5n.pt')
    ours, trusted = load_checkpoint(path), torch.load(path, map_location='cpu', weights_only=False)
    assert list(ours) == list(trusted) and type(ours['model']) is type(trusted['model'])
    a, b = ours['model'].state_dict(), trusted['model'].state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert ours['model'].yaml == trusted['model'].yaml and ours['model'].names == trusted['model'].names


def test_protocol_4_checkpoints_load(yolo, tmp_path):
    # torch.save(..., pickle_protocol=4) names Segment's Detect.forward 'models.yolo' 'Detect.forward'
    from models.yolo import SegmentationModel
    from utils.compat import load_checkpoint
    model = SegmentationModel(yolo / 'models' / 'segment' / 'yolov5n-seg.yaml', nc=2)
    torch.save(yolov5_checkpoint(model), tmp_path / 'p4.pt', pickle_protocol=4)
    loaded = load_checkpoint(tmp_path / 'p4.pt')
    assert loaded['model'].model[-1].detect is model.model[-1].detect
