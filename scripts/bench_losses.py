"""Loss table for scripts/bench.py: one ComputeLoss call per hyp variant, relative to upstream's CIoU + BCE.

The batch is what train.py hands the loss for yolov5s at 640 px, batch 16: Detect outputs of shape
(16, 3, 80|40|20, 80|40|20, 85) and a fixed set of ground-truth boxes (12 per image, sizes from 2% to 60% of the
image, varied aspect ratios), so build_targets matches as many positives as on a COCO-like batch.
"""
from __future__ import annotations

from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
HYPS = PROJECT / 'configs' / 'hyps'


def loss_variants(tree: Path):
    # (name, hyp): upstream's hyp first (the CIoU baseline), then every shipped hyp that changes a loss key
    from utils.loss_options import NEW_KEYS
    loss_keys = {'fl_gamma', *NEW_KEYS} - {'ema_decay', 'ema_tau'}
    base = yaml.safe_load((tree / 'data' / 'hyps' / 'hyp.scratch-low.yaml').read_text())
    variants = [('CIoU (upstream)', base)]
    for path in sorted(HYPS.glob('*.yaml')):  # variant layers, each on upstream's base
        hyp = {**base, **(yaml.safe_load(path.read_text()) or {})}
        if any(hyp.get(key) != base.get(key) for key in loss_keys):
            variants.append((path.stem, hyp))
    return variants


def synthetic_targets(batch, per_image, generator):
    # (image, class, x, y, w, h) normalised, as the dataloader yields them
    import torch
    n = batch * per_image
    image = torch.arange(batch).repeat_interleave(per_image).float()
    cls = torch.randint(0, 80, (n,), generator=generator).float()
    size = torch.exp(torch.empty(n).uniform_(-3.9, -0.5, generator=generator))  # 2% ... 60% of the image
    aspect = torch.exp(torch.empty(n).uniform_(-1.0, 1.0, generator=generator))
    w, h = (size * aspect.sqrt()).clamp(max=0.95), (size / aspect.sqrt()).clamp(max=0.95)
    x = w / 2 + torch.rand(n, generator=generator) * (1 - w)
    y = h / 2 + torch.rand(n, generator=generator) * (1 - h)
    return torch.stack([image, cls, x, y, w, h], 1)


def box_term(compute_loss, p, targets, autocast):
    # The box loss alone on this batch's positives, as ComputeLoss computes it (forward and backward): the part
    # that differs between iou_type variants, which the whole call's objectness term otherwise hides
    import torch
    from utils.metrics import bbox_iou
    _, tbox, indices, anchors = compute_loss.build_targets(p, targets)
    pboxes = []
    for i, pi in enumerate(p):
        b, a, gj, gi = indices[i]
        pxy, pwh = pi[b, a, gj, gi].detach()[:, :4].split(2, 1)
        pboxes.append(torch.cat((pxy.sigmoid() * 2 - 0.5, (pwh.sigmoid() * 2) ** 2 * anchors[i]), 1).requires_grad_())

    def run():
        loss = 0
        with autocast():
            for i, pbox in enumerate(pboxes):
                if compute_loss.box_loss:
                    loss = loss + compute_loss.box_loss(pbox, tbox[i], i, p[i].shape)[0].mean()
                else:
                    loss = loss + (1.0 - bbox_iou(pbox, tbox[i], CIoU=True).squeeze()).mean()
        loss.backward()
    return run


def loss_table(opt, device, time_call):
    import torch
    from models.yolo import Model
    from utils.loss import ComputeLoss

    tree = opt.tree.resolve()
    generator = torch.Generator().manual_seed(0)
    model = Model(str(tree / 'models' / 'yolov5s.yaml'), nc=80).to(device)
    detect = model.model[-1]
    img, batch = opt.loss_img, opt.loss_batch
    amp = opt.amp and device.type == 'cuda'  # as train.py: the loss runs inside autocast, on float16 outputs

    def autocast():
        return torch.autocast(device.type, enabled=amp)

    preds = [(0.5 * torch.randn(batch, detect.na, img // int(s), img // int(s), detect.no, generator=generator)).to(
        device, torch.float16 if amp else torch.float32) for s in detect.stride]
    targets = synthetic_targets(batch, 12, generator).to(device)
    rows, timed = [], []
    for name, hyp in loss_variants(tree):
        model.hyp = hyp
        compute_loss = ComputeLoss(model)
        p = [x.clone().requires_grad_() for x in preds]
        with autocast():
            loss = compute_loss(p, targets)[0]
        fl = 'focal' if hyp.get('fl_gamma') else 'bce'
        rows.append(dict(variant=name, iou_type=hyp.get('iou_type', 'CIoU'),
                         cls_obj=f"{hyp.get('cls_loss') or fl}/{hyp.get('obj_loss') or fl}", loss=float(loss),
                         positives=sum(len(t) for t in compute_loss.build_targets(p, targets)[1])))

        def call(c=compute_loss, p=p):
            with autocast():
                return c(p, targets)[0]

        timed.append({'call': call, 'step': lambda call=call: call().backward(),
                      'box': box_term(compute_loss, p, targets, autocast)})
    for _ in range(opt.rounds):  # interleave variants round by round
        for row, fns in zip(rows, timed):
            for key, fn in fns.items():
                row[key] = min(row.get(key, float('inf')), time_call(fn, device, opt.repeats))
    for row in rows:
        for key in ('call', 'step', 'box'):
            row[f'{key}_ratio'] = row[key] / rows[0][key]
    return rows


def print_loss_table(where, rows, opt):
    print(f'\nLosses on {where}: one ComputeLoss call on yolov5s outputs at {opt.loss_img} px, batch '
          f'{opt.loss_batch}, 12 boxes per image ({rows[0]["positives"]} positives); ratios against upstream '
          'CIoU + BCE. The box term (its forward and backward on the positives) is the part iou_type changes.\n')
    print('| variant | iou_type | cls/obj | loss | call ms | x CIoU | call+backward ms | x CIoU | box term ms '
          '| x CIoU |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['variant']} | {r['iou_type']} | {r['cls_obj']} | {r['loss']:.3f} | {1e3 * r['call']:.1f} | "
              f"{r['call_ratio']:.2f} | {1e3 * r['step']:.1f} | {r['step_ratio']:.2f} | {1e3 * r['box']:.2f} | "
              f"{r['box_ratio']:.2f} |")
