"""The stock train.py / val.py / detect.py / export.py of the patched tree, end to end on the tiny dataset."""
import csv

import numpy as np
import pytest
from conftest import run_script, train_interrupted_then_resumed

IMG = 96


@pytest.fixture(scope='module')
def trained(tree, tiny_data, tmp_path_factory):
    """yolov5n trained for 2 epochs from scratch; returns (run dir, train.py output)."""
    project = tmp_path_factory.mktemp('runs')
    r = run_script(tree, 'train.py', '--data', tiny_data, '--cfg', 'yolov5n.yaml', '--weights', '', '--img', IMG,
                   '--epochs', 2, '--batch', 8, '--workers', 0, '--project', project, '--name', 'e2e')
    return project / 'e2e', r.stdout + r.stderr


def test_train_runs_offline_and_writes_weights_and_results(trained):
    run, log = trained
    assert (run / 'weights' / 'best.pt').exists() and (run / 'weights' / 'last.pt').exists()
    with open(run / 'results.csv') as f:
        rows = [{k.strip(): v for k, v in row.items()} for row in csv.DictReader(f)]
    assert len(rows) == 2
    for row in rows:
        for key in ('train/box_loss', 'train/obj_loss', 'train/cls_loss'):
            assert np.isfinite(float(row[key])) and float(row[key]) > 0
    # no start-up downloads or update checks, no deprecation spam (compat patches)
    for bad in ('Downloading', 'pkg_resources', 'FutureWarning', 'torch.cuda.amp', 'getsize', 'trapz',
                'Traceback', 'git pull'):
        assert bad not in log, bad


def test_val_on_best(tree, trained, tiny_data, tmp_path):
    run, _ = trained
    r = run_script(tree, 'val.py', '--weights', run / 'weights' / 'best.pt', '--data', tiny_data, '--img', IMG,
                   '--task', 'test', '--project', tmp_path, '--name', 'val')
    out = r.stdout + r.stderr
    assert 'all' in out and 'Traceback' not in out


def test_detect_on_an_image(tree, trained, tiny_data, tmp_path):
    run, _ = trained
    image = next((tiny_data.parent / 'images' / 'test').glob('*.jpg'))
    run_script(tree, 'detect.py', '--weights', run / 'weights' / 'best.pt', '--source', image, '--img', IMG,
               '--conf-thres', 0.001, '--project', tmp_path, '--name', 'det', '--save-txt')
    assert (tmp_path / 'det' / image.name).exists()


def export_and_compare_onnx(tree, weights, img):
    """export.py --include onnx, then onnxruntime's output against PyTorch's on the same input."""
    import onnxruntime as ort
    import torch
    from models.experimental import attempt_load
    run_script(tree, 'export.py', '--weights', weights, '--include', 'onnx', '--img', img)
    onnx_file = weights.with_suffix('.onnx')
    assert onnx_file.exists()
    model = attempt_load(weights, device=torch.device('cpu'), fuse=True).eval()
    x = torch.rand(1, 3, img, img, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model(x)[0].numpy()
    session = ort.InferenceSession(str(onnx_file), providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_export_onnx_matches_pytorch(tree, yolo, trained, tmp_path):
    import shutil
    run, _ = trained
    weights = tmp_path / 'best.pt'
    shutil.copy(run / 'weights' / 'best.pt', weights)
    export_and_compare_onnx(tree, weights, IMG)


@pytest.mark.parametrize('event,epoch', [('checkpoint', 0), ('results', 1)])
def test_resume_after_interruption(tree, tiny_data, tmp_path, event, epoch):
    """train.py killed after a checkpoint, or between an epoch's results row and its checkpoint (it used to train
    that epoch twice: rows 0, 1, 1, 2): --resume trains exactly the remaining epochs, each listed once."""
    train_interrupted_then_resumed(tree, tiny_data, 'yolov5n.yaml', tmp_path / 'r', epochs=3, img=64, event=event,
                                   at_epoch=epoch)


def test_seed_changes_training_data_order(yolo, tiny_data):
    """--seed reaches the training DataLoader (v7.0 seeded it with a constant): same seed, same batches; another
    seed, another order; no seed argument, the old order (seed 0)."""
    import yaml
    from utils.dataloaders import create_dataloader
    hyp = yaml.safe_load((yolo / 'data' / 'hyps' / 'hyp.scratch-low.yaml').read_text())
    train = str(tiny_data.parent / 'images' / 'train')

    def first_epoch(**seed):
        loader, _ = create_dataloader(train, 64, 4, 32, hyp=hyp, augment=True, workers=0, shuffle=True, **seed)
        return [p for _, _, paths, _ in (batch for _, batch in zip(range(len(loader)), loader)) for p in paths]

    order = first_epoch(seed=0)
    assert first_epoch(seed=0) == order and first_epoch() == order
    assert first_epoch(seed=1) != order and sorted(first_epoch(seed=1)) == sorted(order)
