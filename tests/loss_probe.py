"""Run inside a YOLOv5 tree: loss and gradient of yolov5n on a fixed batch, printed as exact hex floats.

    python loss_probe.py TREE WEIGHTS.pt [HYP_OVERRIDES_JSON]

Saves the freshly initialised weights to WEIGHTS.pt if it does not exist, else loads them, so two trees
can be compared on the very same model. Works in the unpatched v7.0 tree too: the few modules it cannot
import on today's stack get minimal stand-ins here, in this probe only.
"""
import hashlib
import json
import sys
import types
from pathlib import Path

import torch
import yaml

tree, weights = Path(sys.argv[1]), Path(sys.argv[2])
overrides = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
sys.path.insert(0, str(tree))
try:
    import pkg_resources  # noqa: F401
except ImportError:
    from packaging.version import parse
    sys.modules['pkg_resources'] = types.SimpleNamespace(parse_version=parse)
try:
    import IPython  # noqa: F401
except ImportError:
    ipython = types.ModuleType('IPython')
    ipython.get_ipython = lambda: None
    ipython.display = types.ModuleType('IPython.display')
    ipython.display.display = print
    sys.modules.update({'IPython': ipython, 'IPython.display': ipython.display})

from models.yolo import Model  # noqa: E402
from utils.loss import ComputeLoss  # noqa: E402

torch.manual_seed(0)
model = Model(str(tree / 'models' / 'yolov5n.yaml'), ch=3, nc=3)
if weights.exists():
    model.load_state_dict(torch.load(weights, weights_only=True))
else:
    torch.save(model.state_dict(), weights)
model.hyp = {**yaml.safe_load((tree / 'data' / 'hyps' / 'hyp.scratch-low.yaml').read_text()), **overrides}
model.train()
g = torch.Generator().manual_seed(1)
imgs = torch.rand(4, 3, 128, 128, generator=g)
n = 12
targets = torch.cat([torch.randint(0, 4, (n, 1), generator=g).float(), torch.randint(0, 3, (n, 1), generator=g).float(),
                     0.2 + 0.6 * torch.rand(n, 2, generator=g), 0.05 + 0.4 * torch.rand(n, 2, generator=g)], 1)
loss, items = ComputeLoss(model)(model(imgs), targets)
loss.backward()
grads = {name: hashlib.sha256(p.grad.numpy().tobytes()).hexdigest()[:16] for name, p in model.named_parameters()
         if p.grad is not None}  # layer by layer: a change in one tensor cannot hide in a sum
print(json.dumps({'loss': loss.item().hex(), 'items': [x.hex() for x in items.tolist()], 'grads': grads}))
