#!/usr/bin/env python3
"""Move a YOLOv5 checkpoint's weights into a model built from another YAML, layer by layer by architecture.

    python scripts/transfer.py yolov5s.pt --cfg configs/models/yolov5s_EMA.yaml -o yolov5s_EMA-init.pt
    python scripts/transfer.py best.pt --cfg my.yaml --nc 3 -o init.pt --state-dict   # plain state_dict

train.py does the same by itself (`--weights yolov5s.pt --cfg yolov5s_EMA.yaml`); this writes the result for other
tools, or to look at what moves where: every layer of the new model is listed with the checkpoint layer its weights
come from, or why it keeps its initialisation (new: inserted or replacing a layer of another type; changed: same
type in the same place with other tensor shapes, e.g. another number of classes).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('source', type=Path, help='YOLOv5 checkpoint (.pt) to take weights from')
    p.add_argument('--cfg', required=True, help='model YAML of the new model')
    p.add_argument('-o', '--output', type=Path, required=True, help='where to write the new checkpoint')
    p.add_argument('--nc', type=int, help="number of classes of the new model (default: the checkpoint's)")
    p.add_argument('--keep-anchors', action='store_true', help="take the checkpoint's anchors too (train.py does "
                   "not when --cfg is given: the YAML's anchors, then AutoAnchor)")
    p.add_argument('--state-dict', action='store_true', help='write a plain state_dict instead of a YOLOv5 checkpoint')
    p.add_argument('--tree', type=Path, default=PROJECT / 'yolov5', help='the built YOLOv5 tree (make apply)')
    opt = p.parse_args(argv)
    if not (opt.tree / 'models' / 'yolo.py').exists():
        sys.exit(f'transfer: {opt.tree} is not a built tree; run `make apply` first')
    if not opt.source.is_file():
        sys.exit(f'transfer: checkpoint {opt.source} not found')
    sys.path.insert(0, str(opt.tree))
    import logging

    import torch
    from models.yolo import Model
    from utils.compat import load_checkpoint
    from utils.general import check_yaml
    from utils.weight_transfer import transfer_weights
    logging.getLogger('yolov5').setLevel(logging.WARNING)

    ckpt = load_checkpoint(opt.source)
    if not isinstance(ckpt, dict) or not hasattr(ckpt.get('model'), 'model'):
        sys.exit(f'transfer: {opt.source} is not a YOLOv5 checkpoint (no detection model under "model")')
    src = ckpt['model'].float()
    nc = opt.nc or int(src.nc if hasattr(src, 'nc') else src.yaml['nc'])
    try:
        model = Model(check_yaml(opt.cfg), ch=3, nc=nc)
    except Exception as e:
        sys.exit(f'transfer: cannot build {opt.cfg}: {type(e).__name__}: {e}')
    t = transfer_weights(src, model, exclude=() if opt.keep_anchors else ('anchor',))
    model.load_state_dict(t.state, strict=False)

    status = {layer.index: 'new' for layer in t.new} | {layer.index: 'changed' for layer in t.changed}
    print(f'{"layer":>5}  {"type":<20} {"params":>9}  from checkpoint')
    for m in model.model:
        n = sum(x.numel() for x in m.parameters())
        partial = next((why for layer, why in t.partial if layer.index == m.i), None)
        where = f'layer {t.pairs[m.i]}' + (f' (partial: {partial})' if partial else '') if m.i in t.pairs else \
            status.get(m.i, '-' if n == 0 else 'kept init')
        print(f'{m.i:>5}  {type(m).__name__:<20} {n:>9}  {where}')
    print(t.summary(len(model.state_dict()), opt.source))

    opt.output.parent.mkdir(parents=True, exist_ok=True)
    if opt.state_dict:
        torch.save(model.state_dict(), opt.output)
    else:  # as train.py's checkpoints, finished (epoch -1): usable as --weights
        if nc == getattr(src, 'nc', None) and hasattr(src, 'names'):
            model.names = src.names
        torch.save({'model': model, 'epoch': -1, 'optimizer': None, 'ema': None, 'updates': None,
                    'best_fitness': None, 'transferred_from': str(opt.source)}, opt.output)
    print(f'transfer: wrote {opt.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
