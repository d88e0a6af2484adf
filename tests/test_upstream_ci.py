"""YOLOv5 v7.0's own CI (.github/workflows/ci-testing.yml at the pinned commit) on the patched tree, offline.

`make test` runs its core (train, val and predict of every task, PyTorch Hub) and its Benchmarks job (every export
format, each checked against PyTorch's score); `make test-all` runs every line of the workflow.

The same steps, in the same order, with these adaptations only: a tiny dataset for each task made on the spot
instead of coco128 / coco128-seg / mnist160; the "official weights" trained here for one epoch instead of
downloaded; explicit --project folders; hubconf.py's demo run on the local images of its list (its list also
holds a URL). benchmarks.py's formats that need a package we do not ship (OpenVINO, TensorFlow, CoreML, ...)
show in its table as not run, as upstream's CI shows them without the package; it must not crash.
"""
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import PROJECT, PY, SCRIPT_ENV, classification_data, segmentation_data

slow = pytest.mark.slow  # the whole workflow: make test-all; make test runs its core (every task) and benchmarks


def step(tree, *args, timeout=600):
    """One CI line, run in the tree as CI runs it; fails the test with the line and its output."""
    r = subprocess.run([PY, *map(str, args)], cwd=tree, env=SCRIPT_ENV, capture_output=True, text=True,
                       timeout=timeout)
    line = ' '.join(map(str, args))
    assert r.returncode == 0, f'CI step failed: python {line}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}'
    return r


@slow
def test_check_environment(tree):
    assert 'Setup complete' in step(tree, '-c', 'import utils; utils.notebook_init()').stdout


@slow
def test_detection(tree, tiny_data, tmp_path):
    runs, test_images = tmp_path / 'runs', tiny_data.parent / 'images' / 'test'
    common = ['--imgsz', 64, '--batch', 32, '--epochs', 1, '--device', 'cpu', '--data', tiny_data, '--workers', 0]
    step(tree, 'train.py', '--weights', '', '--cfg', 'yolov5n.yaml', *common, '--project', runs, '--name', 'm')
    m = runs / 'm' / 'weights' / 'last.pt'  # stands for the official yolov5n.pt
    step(tree, 'train.py', '--weights', m, '--cfg', 'yolov5n.yaml', *common, '--project', runs, '--name', 'exp')
    b = runs / 'exp' / 'weights' / 'best.pt'
    for w in (m, b):
        step(tree, 'val.py', '--imgsz', 64, '--batch', 32, '--weights', w, '--device', 'cpu', '--data', tiny_data,
             '--project', runs / 'val')
        step(tree, 'detect.py', '--imgsz', 64, '--weights', w, '--device', 'cpu', '--source', test_images,
             '--project', runs / 'detect')
    # hubconf.py --model: its __main__ block, on the local images of its list
    step(tree, '-c', f'import numpy as np, cv2; from PIL import Image; import hubconf\n'
                     f'model = hubconf._create(name={str(m)!r}, pretrained=True, channels=3, classes=80)\n'
                     f'ims = ["data/images/zidane.jpg", cv2.imread("data/images/bus.jpg")[:, :, ::-1], '
                     f'Image.open("data/images/bus.jpg"), np.zeros((320, 640, 3))]\n'
                     f'r = model(ims, size=320); r.print(); r.save(save_dir={str(runs / "hub")!r})')
    step(tree, 'models/yolo.py', '--cfg', 'yolov5n.yaml')
    step(tree, 'export.py', '--weights', m, '--img', 64, '--include', 'torchscript')
    assert m.with_suffix('.torchscript').exists()
    step(tree, '-c', f'import torch\nim = torch.zeros([1, 3, 64, 64])\n'
                     f'for path in {str(m)!r}, {str(b)!r}:\n'
                     f'    model = torch.hub.load(".", "custom", path=path, source="local")\n'
                     f'    print(model("data/images/bus.jpg"))\n'
                     f'    model(im)\n'
                     f'    torch.jit.trace(model, [im])\n')


@slow
def test_segmentation(tree, tiny_data, tmp_path):
    data, runs = segmentation_data(tiny_data, tmp_path / 'seg'), tmp_path / 'runs'
    common = ['--imgsz', 64, '--batch', 32, '--epochs', 1, '--device', 'cpu', '--data', data, '--workers', 0]
    step(tree, 'segment/train.py', '--weights', '', '--cfg', 'yolov5n-seg.yaml', *common, '--project', runs,
         '--name', 'm')
    m = runs / 'm' / 'weights' / 'last.pt'  # stands for the official yolov5n-seg.pt
    step(tree, 'segment/train.py', '--weights', m, '--cfg', 'yolov5n-seg.yaml', *common, '--project', runs,
         '--name', 'exp')
    step(tree, 'segment/train.py', '--weights', '', '--cfg', 'yolov5n-seg.yaml', *common, '--project', runs,
         '--name', 'scratch')
    b = runs / 'exp' / 'weights' / 'best.pt'
    for w in (m, b):
        step(tree, 'segment/val.py', '--imgsz', 64, '--batch', 32, '--weights', w, '--device', 'cpu', '--data', data,
             '--project', runs / 'val')
        step(tree, 'segment/predict.py', '--imgsz', 64, '--weights', w, '--device', 'cpu', '--source',
             tiny_data.parent / 'images' / 'test', '--project', runs / 'predict')
        step(tree, 'export.py', '--weights', w, '--img', 64, '--include', 'torchscript', '--device', 'cpu')
    # the Benchmarks job's segmentation lines
    r = step(tree, 'benchmarks.py', '--data', data, '--weights', m, '--img', 64, timeout=900)
    assert 'Benchmarks complete' in r.stdout + r.stderr
    step(tree, 'export.py', '--weights', m, '--include', 'onnx', '--img', 64)
    step(tree, 'segment/predict.py', '--weights', m.with_suffix('.onnx'), '--img', 64, '--source',
         tiny_data.parent / 'images' / 'test', '--project', runs / 'predict-onnx')


@slow
def test_classification(tree, tiny_data, tmp_path):
    data, runs = classification_data(tmp_path / 'cls'), tmp_path / 'runs'
    common = ['--imgsz', 32, '--data', data, '--epochs', 1, '--workers', 0, '--batch-size', 8]
    detection = tmp_path / 'det'
    step(tree, 'train.py', '--weights', '', '--cfg', 'yolov5n.yaml', '--imgsz', 64, '--epochs', 1, '--batch', 8,
         '--data', tiny_data, '--workers', 0, '--project', detection, '--name', 'd')
    # a -cls checkpoint as upstream makes them: a detection model cut into a classifier, trained one epoch
    step(tree, 'classify/train.py', '--model', detection / 'd' / 'weights' / 'last.pt', *common, '--project', runs,
         '--name', 'm')
    m = runs / 'm' / 'weights' / 'last.pt'  # stands for the official yolov5n-cls.pt
    step(tree, 'classify/train.py', '--model', m, *common, '--project', runs, '--name', 'exp')
    b = runs / 'exp' / 'weights' / 'best.pt'
    step(tree, 'classify/val.py', '--imgsz', 32, '--weights', b, '--data', data, '--project', runs / 'val')
    image = next((data / 'test' / 'disc').glob('*.png'))
    step(tree, 'classify/predict.py', '--imgsz', 32, '--weights', b, '--source', image, '--project', runs / 'predict')
    step(tree, 'classify/predict.py', '--imgsz', 32, '--weights', m, '--source', 'data/images/bus.jpg',
         '--project', runs / 'predict')
    step(tree, 'export.py', '--weights', b, '--img', 64, '--include', 'torchscript')
    step(tree, '-c', f'import torch\nfor path in {str(m)!r}, {str(b)!r}:\n'
                     f'    model = torch.hub.load(".", "custom", path=path, source="local")\n')
    # the Benchmarks job's classification lines
    step(tree, 'export.py', '--weights', m, '--include', 'onnx', '--img', 224)
    step(tree, 'classify/predict.py', '--weights', m.with_suffix('.onnx'), '--img', 224, '--source',
         'data/images/bus.jpg', '--project', runs / 'predict-onnx')


def test_core_every_task_through_the_stock_scripts(tree, tiny_data, seg_data, cls_data, tmp_path):
    # one train (1 epoch), val and predict per task, and a checkpoint through PyTorch Hub, as the workflow runs them.
    # The three chains run side by side (each step is a subprocess, mostly interpreter start-up and imports);
    # classification starts from detection's checkpoint, so it waits for detection's training only
    runs, images = tmp_path / 'runs', tiny_data.parent / 'images' / 'test'
    common = ['--imgsz', 64, '--batch', 16, '--epochs', 1, '--device', 'cpu', '--workers', 0, '--project', runs]
    det = runs / 'det' / 'weights' / 'best.pt'

    def detection(pool):
        step(tree, 'train.py', '--weights', '', '--cfg', 'yolov5n.yaml', '--data', tiny_data, *common, '--name', 'det')
        classifying = pool.submit(classification)
        step(tree, 'val.py', '--imgsz', 64, '--weights', det, '--data', tiny_data, '--project', runs / 'val-det')
        step(tree, 'detect.py', '--imgsz', 64, '--weights', det, '--source', images, '--project', runs / 'detect')
        step(tree, '-c', f'import torch; m = torch.hub.load(".", "custom", path={str(det)!r}, source="local")\n'
                         f'print(m("data/images/bus.jpg"))')
        classifying.result()

    def segmentation():
        step(tree, 'segment/train.py', '--weights', '', '--cfg', 'yolov5n-seg.yaml', '--data', seg_data, *common,
             '--name', 'seg')
        seg = runs / 'seg' / 'weights' / 'best.pt'
        step(tree, 'segment/val.py', '--imgsz', 64, '--weights', seg, '--data', seg_data, '--project',
             runs / 'val-seg')
        step(tree, 'segment/predict.py', '--imgsz', 64, '--weights', seg, '--source', images, '--project',
             runs / 'pred-seg')

    def classification():
        step(tree, 'classify/train.py', '--model', det, '--data', cls_data, '--imgsz', 32, '--epochs', 1, '--workers',
             0, '--batch-size', 8, '--project', runs, '--name', 'cls')
        cls = runs / 'cls' / 'weights' / 'best.pt'
        step(tree, 'classify/val.py', '--imgsz', 32, '--weights', cls, '--data', cls_data, '--project',
             runs / 'val-cls')
        r = step(tree, 'classify/predict.py', '--imgsz', 32, '--weights', cls, '--source',
                 next((cls_data / 'test' / 'disc').glob('*.png')), '--project', runs / 'pred-cls')
        assert 'disc' in r.stdout + r.stderr or 'square' in r.stdout + r.stderr

    with ThreadPoolExecutor(3) as pool:
        chains = [pool.submit(detection, pool), pool.submit(segmentation)]
        for chain in chains:
            chain.result()  # a failed step raises here, with its command and output


def self_labelled_data(tree, weights, dest, img):
    """Upstream's data/images labelled with the weights' own detections at img px: every export format of those
    weights, validated at img, must score as PyTorch does, near 1 (coco128, upstream CI's data, is not offline)."""
    step(tree, 'detect.py', '--weights', weights, '--img', img, '--source', 'data/images', '--save-txt',
         '--project', dest, '--name', 'labels', '--device', 'cpu')
    for folder in ('images', 'labels'):
        (dest / folder / 'val').mkdir(parents=True)
    for image in sorted((tree / 'data' / 'images').glob('*.jpg')):
        shutil.copy(image, dest / 'images' / 'val')
        shutil.copy(dest / 'labels' / 'labels' / f'{image.stem}.txt', dest / 'labels' / 'val')
    names = __import__('yaml').safe_load((tree / 'data' / 'coco128.yaml').read_text())['names']
    data = dest / 'data.yaml'
    data.write_text(__import__('yaml').safe_dump({'path': str(dest), 'train': 'images/val', 'val': 'images/val',
                                                  'names': names}))
    return data


def benchmark_rows(output):
    """{format: (size MB, mAP50-95, ms)} of the formats benchmarks.py's table shows a number for, or None."""
    rows = {}
    for name, size, metric, speed in re.findall(r'^\s*\d+\s+(PyTorch|TorchScript|ONNX)\s+(\S+)\s+(\S+)\s+(\S+)\s*$',
                                                output, re.M):
        rows[name] = None if 'nan' in (size + metric + speed).lower() or 'None' in metric else float(metric)
    return rows


def test_benchmarks_every_export_format_scores_as_pytorch(tree, tmp_path):
    # upstream CI: benchmarks.py --weights yolov5n.pt --img 320 --hard-fail 0.29; here on data labelled by the
    # same weights, so each format must come close to 1 and to PyTorch; an empty row (a format that failed to
    # export or validate) is a failure, which --hard-fail alone does not catch
    weights = PROJECT.parent / 'shared' / 'weights' / 'yolov5n.pt'
    if not weights.exists():
        pytest.skip('needs ../shared/weights/yolov5n.pt (upstream\'s COCO-pretrained YOLOv5n)')
    local = tmp_path / 'yolov5n.pt'
    shutil.copy(weights, local)  # benchmarks.py writes the exports next to the weights
    data = self_labelled_data(tree, local, tmp_path / 'self', 320)
    r = step(tree, 'benchmarks.py', '--weights', local, '--data', data, '--img', 320, '--device', 'cpu',
             '--hard-fail', 0.7, timeout=900)
    rows = benchmark_rows(r.stdout + r.stderr)
    assert set(rows) == {'PyTorch', 'TorchScript', 'ONNX'} and None not in rows.values(), rows
    assert rows['PyTorch'] > 0.7 and all(abs(v - rows['PyTorch']) < 0.01 for v in rows.values()), rows
    step(tree, 'detect.py', '--weights', local.with_suffix('.onnx'), '--img', 320, '--source', 'data/images',
         '--project', tmp_path / 'detect')
