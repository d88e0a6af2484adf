"""Run inside a YOLOv5 tree: everything train.py's defaults decide, recorded exactly, for comparing two trees.

    python train_probe.py TREE DATA.yaml OUT_DIR

Trains yolov5n from scratch with train.py's default options (2 epochs, 64 px, tiny data, CPU) through train.main,
recording per batch the images, targets and running losses it trained on (data order and augmentation), then the
hyp as train.py wrote it, results.csv (losses, metrics after NMS, learning rates), every tensor of last.pt (model
and EMA), ModelEMA's decay ramp and the NMS time limit. Prints one JSON object of hashes and exact hex floats.
"""
import hashlib
import json
import os
import sys
import time
from pathlib import Path

tree, data, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve(), Path(sys.argv[3]).resolve()
os.chdir(tree)
sys.path.insert(0, str(tree))

import torch  # noqa: E402

import train  # noqa: E402
from utils.callbacks import Callbacks  # noqa: E402


def digest(x):
    return hashlib.sha256(x.detach().contiguous().numpy().tobytes() if torch.is_tensor(x) else x).hexdigest()[:16]


batches = []
callbacks = Callbacks()
callbacks.register_action('on_train_batch_end', 'probe', lambda model, ni, imgs, targets, paths, mloss: batches.append(
    [ni, digest(imgs), digest(targets), [float(x).hex() for x in mloss]]))
opt = train.parse_opt(known=True)
opt.data, opt.cfg, opt.weights, opt.imgsz, opt.epochs, opt.batch_size = str(data), 'yolov5n.yaml', '', 64, 2, 8
opt.workers, opt.device, opt.project, opt.name, opt.exist_ok, opt.noplots = 0, 'cpu', str(out), 'p', True, True
train.main(opt, callbacks=callbacks)

run = out / 'p'
from utils.compat import load_checkpoint  # noqa: E402
last = load_checkpoint(run / 'weights' / 'last.pt')
weights = {k: digest(v.float()) for k, v in last['model'].state_dict().items()}

# ModelEMA as train.py builds it (the model carries the hyp), and its decay over updates after one update
import yaml  # noqa: E402
from utils.torch_utils import ModelEMA  # noqa: E402
model = last['model'].float()
model.hyp = yaml.safe_load((run / 'hyp.yaml').read_text())
ema = ModelEMA(model)
ema.update(model)
decay = [float(ema.decay(u)).hex() for u in (0, 1, 10, 100, 1000, 2000, 10000, 100000)]

# NMS: how far it gets in a batch of 64 images when each image takes one (fake) second
from utils import general  # noqa: E402
clock = iter(range(10 ** 6))
real_time, general.time.time = general.time.time, lambda: float(next(clock))
try:
    g = torch.Generator().manual_seed(0)
    pred = torch.cat([torch.rand(64, 200, 4, generator=g) * 64, torch.rand(64, 200, 3, generator=g)], 2)
    kept = [len(x) for x in general.non_max_suppression(pred, 0.25, 0.45)]
finally:
    general.time.time = real_time

print(json.dumps({'batches': batches, 'hyp.yaml': (run / 'hyp.yaml').read_text(),
                  'results.csv': (run / 'results.csv').read_text(), 'last.pt': weights, 'ema_decay': decay,
                  'nms_kept': kept}))
