"""Loss options chosen by hyp keys: formulas against plain scalar implementations, robustness, validation, training."""
import math

import pytest
import torch
import yaml
import loss_reference as ref
from conftest import PROJECT, run_script

HYPS = sorted((PROJECT / 'configs' / 'hyps').glob('*.yaml'))  # layers on upstream's hyp.scratch-low.yaml
PAIRS = [  # (pred xywh, target xywh)
    ((5.0, 5.0, 4.0, 2.0), (5.0, 5.0, 4.0, 2.0)),  # identical
    ((5.0, 5.0, 2.0, 1.0), (5.0, 5.0, 4.0, 2.0)),  # nested, same centre
    ((4.5, 5.5, 1.0, 1.0), (5.0, 5.0, 4.0, 3.0)),  # nested, off centre
    ((1.0, 1.0, 1.0, 1.0), (8.0, 6.0, 2.0, 3.0)),  # disjoint
    ((3.0, 4.0, 6.0, 1.0), (4.0, 3.5, 1.5, 5.0)),  # crossing, very different aspect ratios
]


def corners(b):
    x, y, w, h = b
    return x - w / 2, y - h / 2, x + w / 2, y + h / 2


def plain_terms(p, t):
    (pl, pt, pr, pb), (tl, tt, tr, tb) = corners(p), corners(t)
    inter = max(0.0, min(pr, tr) - max(pl, tl)) * max(0.0, min(pb, tb) - max(pt, tt))
    union = p[2] * p[3] + t[2] * t[3] - inter
    cw, ch = max(pr, tr) - min(pl, tl), max(pb, tb) - min(pt, tt)
    return inter / union, union, cw, ch, (t[0] - p[0]) ** 2 + (t[1] - p[1]) ** 2


def plain_loss(kind, p, t, alpha=1.0):
    iou, union, cw, ch, rho2 = plain_terms(p, t)
    c2 = cw ** 2 + ch ** 2
    if kind == 'IoU':
        return 1 - iou ** alpha
    if kind == 'GIoU':
        return 1 - iou ** alpha + ((cw * ch - union) / (cw * ch)) ** alpha
    if kind == 'DIoU':
        return 1 - iou ** alpha + (rho2 / c2) ** alpha
    if kind == 'CIoU':
        v = 4 / math.pi ** 2 * (math.atan(t[2] / t[3]) - math.atan(p[2] / p[3])) ** 2
        beta = v / (v - iou + 1) if v else 0.0
        return 1 - iou ** alpha + (rho2 / c2) ** alpha + (beta * v) ** alpha
    eiou = 1 - iou + rho2 / c2 + (p[2] - t[2]) ** 2 / cw ** 2 + (p[3] - t[3]) ** 2 / ch ** 2
    if kind == 'EIoU':
        return eiou
    if kind == 'FocalEIoU':
        return iou ** 0.5 * eiou
    if kind == 'SIoU':
        sigma = math.sqrt(rho2)
        sin_a = abs(t[1] - p[1]) / sigma if sigma else 0.0
        angle = 1 - 2 * math.sin(math.asin(sin_a) - math.pi / 4) ** 2
        g = 2 - angle
        dist = sum(1 - math.exp(-g * (d / c) ** 2) for d, c in ((t[0] - p[0], cw), (t[1] - p[1], ch)))
        shape = sum((1 - math.exp(-abs(a - b) / max(a, b))) ** 4 for a, b in ((p[2], t[2]), (p[3], t[3])))
        return 1 - iou + (dist + shape) / 2
    if kind == 'WIoUv1':
        return math.exp(rho2 / (cw ** 2 + ch ** 2)) * (1 - iou)
    if kind == 'MPDIoU':
        (pl, pt, pr, pb), (tl, tt, tr, tb) = corners(p), corners(t)
        w, h = 20, 16  # the "image": the layer's grid size
        return 1 - (iou - ((pl - tl) ** 2 + (pt - tt) ** 2) / (w * w + h * h) - ((pr - tr) ** 2 + (pb - tb) ** 2) / (w * w + h * h))
    raise KeyError(kind)


@pytest.fixture(scope='module')
def lo(yolo):
    from utils import loss_options
    return loss_options


class FakeDetect:
    stride = torch.tensor([8.0, 16.0, 32.0])


def box_loss(lo, **hyp):
    return lo.BoxLoss(lo.validate_loss_hyp(hyp), FakeDetect.stride)


@pytest.mark.parametrize('kind', ['IoU', 'GIoU', 'DIoU', 'CIoU', 'EIoU', 'FocalEIoU', 'SIoU', 'WIoUv1', 'MPDIoU'])
def test_box_losses_match_plain_formulas(lo, kind):
    p = torch.tensor([pp for pp, _ in PAIRS], dtype=torch.float64)
    t = torch.tensor([tt for _, tt in PAIRS], dtype=torch.float64)
    loss, iou = box_loss(lo, iou_type=kind, alpha_iou=1.0 if kind != 'CIoU' else 1.0)(p, t, 0, (1, 3, 16, 20, 7))
    expected = torch.tensor([plain_loss(kind, pp, tt) for pp, tt in PAIRS])
    torch.testing.assert_close(loss.double(), expected.double(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(iou.double(), torch.tensor([plain_terms(pp, tt)[0] for pp, tt in PAIRS]).double(),
                               rtol=1e-5, atol=1e-5)
    assert loss[0].item() == pytest.approx(0.0, abs=1e-4) or kind == 'FocalEIoU'  # identical boxes: no loss


@pytest.mark.parametrize('kind', ['IoU', 'GIoU', 'DIoU', 'CIoU'])
def test_alpha_iou_powers(lo, kind):
    p = torch.tensor([pp for pp, _ in PAIRS[1:]])  # not identical: the power of 0 is clamped
    t = torch.tensor([tt for _, tt in PAIRS[1:]])
    loss, _ = box_loss(lo, iou_type=kind, alpha_iou=3.0)(p, t, 0, (1, 3, 16, 20, 7))
    expected = torch.tensor([plain_loss(kind, pp, tt, alpha=3.0) for pp, tt in PAIRS[1:]])
    torch.testing.assert_close(loss, expected.float(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize('coord', range(4), ids=['x', 'y', 'w', 'h'])
def test_nwd_reads_every_coordinate_in_pixels(lo, coord):
    # one coordinate offset at a time: a term left out of W2 would leave NWD at 1; sizes enter W2 halved
    t = torch.tensor([[5.0, 5.0, 3.0, 2.0]], dtype=torch.float64)
    p = t.clone()
    p[0, coord] += 0.6
    for layer, stride in enumerate(FakeDetect.stride.tolist()):  # grid units -> pixels: the layer's stride
        blend, _ = box_loss(lo, iou_type='IoU', nwd_ratio=0.25, nwd_constant=12.8)(p, t, layer, (1, 3, 16, 20, 7))
        base, _ = box_loss(lo, iou_type='IoU')(p, t, layer, (1, 3, 16, 20, 7))
        w = 0.6 * stride * (0.5 if coord >= 2 else 1.0)  # sqrt(W2^2), pixels
        assert blend.item() == pytest.approx(0.75 * base.item() + 0.25 * (1 - math.exp(-w / 12.8)), rel=1e-5)


def test_wiou_v3_running_mean_and_focusing(lo):
    bl = box_loss(lo, iou_type='WIoUv3', wiou_momentum=0.1)
    p, t = torch.tensor([[5.0, 5.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]]), torch.tensor([[5.0, 5.0, 4.0, 2.0]] * 2)
    l_iou = 1 - torch.tensor([plain_terms(pp, tt)[0] for pp, tt in zip(p.tolist(), t.tolist())])
    loss, _ = bl(p.clone().requires_grad_(), t, 0, (1, 3, 16, 20, 7))  # a training batch: it back-propagates
    assert bl.wiou.iou_mean == pytest.approx(0.9 * 1.0 + 0.1 * l_iou.mean().item())  # moved from its start, 1
    beta = l_iou / 1.0  # focusing used the mean before this batch
    r = beta / (3.0 * 1.9 ** (beta - 3.0))
    v1 = torch.tensor([plain_loss('WIoUv1', pp, tt) for pp, tt in zip(p.tolist(), t.tolist())])
    torch.testing.assert_close(loss.detach(), (r * v1).float(), rtol=1e-5, atol=1e-6)
    before = bl.wiou.iou_mean
    with torch.no_grad():  # val.py's batches (it runs under inference mode)
        bl(p.clone().requires_grad_(), t, 0, (1, 3, 16, 20, 7))
    bl(p, t, 0, (1, 3, 16, 20, 7))
    assert bl.wiou.iou_mean == before  # validation does not move it


def wiou_loss_on_a_model(yolo, **hyp):
    from models.yolo import Model
    from utils.loss import ComputeLoss
    model = Model(str(yolo / 'models' / 'yolov5n.yaml'), nc=3)
    model.hyp = {**yaml.safe_load((yolo / 'data' / 'hyps' / 'hyp.scratch-low.yaml').read_text()), **hyp}
    return model, ComputeLoss(model)


def test_wiou_mean_moves_on_training_batches_only_and_lives_on_the_model(yolo):
    import copy
    from utils.weight_transfer import load_pretrained
    model, compute_loss = wiou_loss_on_a_model(yolo, iou_type='WIoUv3', wiou_momentum=0.01)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4], [1, 0, 0.3, 0.6, 0.2, 0.2]])
    images = torch.rand(2, 3, 64, 64)
    model.train()
    compute_loss(model(images), targets)[0].backward()  # a training step: 3 updates, one per detection layer
    trained = model.loss_state['wiou_iou_mean']
    assert trained < 1.0
    model.eval()
    with torch.inference_mode():  # as val.py, with train.py's ComputeLoss
        compute_loss(model(images)[1], targets)
    assert model.loss_state['wiou_iou_mean'] == trained
    # a checkpoint pickles the model, state included; --resume brings it into the new model, fine-tuning does not
    saved = copy.deepcopy(model)
    for resume, expected in ((True, trained), (False, None)):
        fresh, _ = wiou_loss_on_a_model(yolo)
        load_pretrained(saved, fresh, 'last.pt', resume=resume)
        assert getattr(fresh, 'loss_state', {}).get('wiou_iou_mean') == expected
    # train.py's order on --resume: model and its state first, then the loss, which goes on from the saved mean
    from models.yolo import Model
    from utils.loss import ComputeLoss
    resumed = Model(str(yolo / 'models' / 'yolov5n.yaml'), nc=3)
    load_pretrained(saved, resumed, 'last.pt', resume=True)
    resumed.hyp = model.hyp
    assert ComputeLoss(resumed).box_loss.wiou.iou_mean == trained


def test_wiou_momentum_from_run_length_unless_set(yolo, lo):
    from utils.box_losses import wiou_momentum
    _, compute_loss = wiou_loss_on_a_model(yolo, iou_type='WIoUv2')
    lo.set_run_length(compute_loss, batches_per_epoch=13, epochs=40)
    m = compute_loss.box_loss.wiou.momentum
    assert m == pytest.approx(wiou_momentum(13 * 3, 40))
    assert (1 - m) ** (13 * 3 * 20) == pytest.approx(0.05)  # the paper: the initial mean weighs 5% after t n updates
    _, compute_loss = wiou_loss_on_a_model(yolo, iou_type='WIoUv2', wiou_momentum=0.01)
    lo.set_run_length(compute_loss, batches_per_epoch=13, epochs=40)
    assert compute_loss.box_loss.wiou.momentum == 0.01  # an explicit hyp key wins
    _, compute_loss = wiou_loss_on_a_model(yolo)  # CIoU: nothing to set
    lo.set_run_length(compute_loss, batches_per_epoch=13, epochs=40)


@pytest.mark.parametrize('spelling', ['varifocal', 'VariFocal', 'VARIFOCAL'])
def test_varifocal_class_targets_in_any_spelling(yolo, spelling):
    from utils.loss_options import VarifocalLoss
    _, compute_loss = wiou_loss_on_a_model(yolo, cls_loss=spelling)
    assert compute_loss.cls_iou_target and isinstance(compute_loss.BCEcls, VarifocalLoss)
    _, compute_loss = wiou_loss_on_a_model(yolo, cls_loss='BCE')
    assert not compute_loss.cls_iou_target


@pytest.mark.parametrize('kind', lo_kinds := ['IoU', 'GIoU', 'DIoU', 'CIoU', 'EIoU', 'FocalEIoU', 'SIoU', 'WIoUv1',
                                              'WIoUv2', 'WIoUv3', 'MPDIoU'])
def test_degenerate_boxes_give_finite_losses_and_gradients(lo, kind):
    p = torch.tensor([[5.0, 5.0, 0.0, 2.0], [5.0, 5.0, 2.0, 0.0], [5.0, 5.0, 0.0, 0.0], [1e4, 1e4, 1e5, 1e5],
                      [5.0, 5.0, 1e-9, 1e-9], [5.0, 5.0, 4.0, 2.0]], requires_grad=True)
    t = torch.tensor([[5.0, 5.0, 4.0, 2.0], [5.0, 5.0, 4.0, 2.0], [5.0, 5.0, 0.0, 0.0], [5.0, 5.0, 1.0, 1.0],
                      [5.0, 5.0, 1e-9, 1e-9], [5.0, 5.0, 4.0, 2.0]])
    for hyp in ({'iou_type': kind}, {'iou_type': kind, 'nwd_ratio': 0.5}):
        loss, iou = box_loss(lo, **hyp)(p, t, 2, (1, 3, 16, 20, 7))
        (grad,) = torch.autograd.grad(loss.sum(), p)
        assert torch.isfinite(loss).all() and torch.isfinite(iou).all() and torch.isfinite(grad).all(), hyp


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('kind', lo_kinds)
def test_losses_stay_finite_under_autocast(lo, kind, dtype):
    g = torch.Generator().manual_seed(0)
    p = (torch.rand(64, 4, generator=g) * 10 + 0.01).to(dtype).requires_grad_()
    t = (torch.rand(64, 4, generator=g) * 10 + 0.01).to(dtype)
    with torch.autocast('cpu', dtype=dtype):
        loss, _ = box_loss(lo, iou_type=kind, nwd_ratio=0.3)(p, t, 0, (1, 3, 16, 20, 7))
    (grad,) = torch.autograd.grad(loss.sum(), p)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all()


def test_varifocal_against_its_formula(lo):
    pred = torch.tensor([[2.0, -1.0, 0.3], [-3.0, 0.5, 1.5]])
    q = torch.tensor([[0.8, 0.0, 0.0], [0.0, 0.4, 0.0]])  # IoU targets of the positives, 0 for negatives
    got = lo.VarifocalLoss(torch.nn.BCEWithLogitsLoss(reduction='sum'), alpha=0.75, gamma=2.0)(pred, q)
    expected = 0.0
    for x, qi in zip(pred.flatten().tolist(), q.flatten().tolist()):
        p = 1 / (1 + math.exp(-x))
        if qi > 0:
            expected += -qi * (qi * math.log(p) + (1 - qi) * math.log(1 - p))
        else:
            expected += -0.75 * p ** 2 * math.log(1 - p)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_cls_obj_selection_and_fl_gamma_meaning(lo, yolo):
    from utils.loss import FocalLoss, QFocalLoss
    base = {'cls_pw': 1.0, 'obj_pw': 1.0, 'fl_gamma': 0.0}
    cur_cls, cur_obj = object(), object()
    assert lo.select_cls_obj_losses(base, 'cpu', cur_cls, cur_obj) == (cur_cls, cur_obj)  # unset: upstream's
    c, o = lo.select_cls_obj_losses({**base, 'cls_loss': 'Focal', 'obj_loss': 'qfocal', 'fl_gamma': 2.0}, 'cpu', 0, 0)
    assert isinstance(c, FocalLoss) and c.gamma == 2.0 and isinstance(o, QFocalLoss)
    c, o = lo.select_cls_obj_losses({**base, 'cls_loss': 'varifocal', 'obj_loss': 'bce'}, 'cpu', 0, 0)
    assert isinstance(c, lo.VarifocalLoss) and isinstance(o, torch.nn.BCEWithLogitsLoss) and o.reduction == 'mean'


@pytest.mark.parametrize('hyp,message', [
    ({'iou_type': 'CIOU2'}, "hyp iou_type='CIOU2' is not valid; choose one of: IoU, GIoU"),
    ({'cls_loss': 'softmax'}, "hyp cls_loss='softmax' is not valid; choose one of: bce, focal, qfocal, varifocal"),
    ({'nwd_ratio': 1.5}, 'hyp nwd_ratio=1.5 is not valid; it must be a number in [0, 1]'),
    ({'ema_decay': 1.0}, 'hyp ema_decay=1.0 is not valid; it must be a number in [0, 1)'),
    ({'alpha_iou': 'three'}, "hyp alpha_iou='three' is not valid"),
    ({'iou_type': 'SIoU', 'alpha_iou': 3}, 'alpha_iou=3.0 applies to iou_type IoU, GIoU, DIoU, CIoU, EIoU, not SIoU'),
])
def test_bad_values_name_key_value_and_choices(lo, hyp, message):
    with pytest.raises(ValueError, match=message.replace('[', r'\[').replace(']', r'\]').replace('(', r'\(').replace(')', r'\)')):
        lo.validate_loss_hyp(hyp)


def test_weight_ema_decay_zero_keeps_live_weights(yolo):
    from utils.torch_utils import ModelEMA
    model = torch.nn.Linear(3, 2)
    model.hyp = {'ema_decay': 0.0}
    ema = ModelEMA(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.equal(ema.ema.weight, model.weight)
    model.hyp = {'ema_decay': 0.9, 'ema_tau': 1.0}
    ema = ModelEMA(model)
    ema.update(model)
    assert ema.decay(1e9) == pytest.approx(0.9)
    del model.hyp
    ema = ModelEMA(model)
    ema.update(model)
    assert ema.decay(1e9) == pytest.approx(0.9999)  # upstream's default without the keys


def test_unknown_loss_fails_before_training(tree, tiny_data, tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text((PROJECT / 'configs' / 'hyps' / 'eiou.yaml').read_text().replace('EIoU', 'EIOU-2'))
    with pytest.raises(AssertionError, match="hyp iou_type='EIOU-2' is not valid") as e:
        run_script(tree, 'train.py', '--data', tiny_data, '--cfg', 'yolov5n.yaml', '--weights', '', '--img', 64,
                   '--epochs', 1, '--batch', 8, '--workers', 0, '--hyp', f'hyp.scratch-low.yaml,{bad}', '--project',
                   tmp_path, '--name', 'bad')
    assert not (tmp_path / 'bad' / 'weights' / 'last.pt').exists()  # no epoch trained


@pytest.mark.parametrize('hyp', HYPS, ids=lambda p: p.stem)
def test_each_shipped_hyp_takes_finite_training_steps(yolo, hyp):
    """train.py's path in-process: the layered, checked hyp, ComputeLoss with the run length, SGD steps with the
    weight EMA, then the validation loss (val.py's: no grad), all finite."""
    from models.yolo import Model
    from utils.hyp_files import load_hyp
    from utils.loss import ComputeLoss
    from utils.loss_options import set_run_length
    from utils.torch_utils import ModelEMA
    torch.manual_seed(0)
    model = Model(str(yolo / 'models' / 'yolov5n.yaml'), nc=3).train()
    model.hyp = load_hyp(f"{yolo / 'data' / 'hyps' / 'hyp.scratch-low.yaml'},{hyp}")
    compute_loss = ComputeLoss(model)
    set_run_length(compute_loss, 2, 3)
    ema = ModelEMA(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=model.hyp['lr0'], momentum=model.hyp['momentum'])
    g = torch.Generator().manual_seed(1)
    imgs = torch.rand(4, 3, 64, 64, generator=g)
    targets = torch.cat([torch.arange(4).repeat(2)[:, None].float(), torch.randint(0, 3, (8, 1), generator=g).float(),
                         0.3 + 0.4 * torch.rand(8, 2, generator=g), 0.1 + 0.3 * torch.rand(8, 2, generator=g)], 1)
    for _ in range(3):
        loss, items = compute_loss(model(imgs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ema.update(model)
        assert torch.isfinite(loss).all() and torch.isfinite(items).all(), items
    assert all(torch.isfinite(p).all() for p in ema.ema.parameters())
    with torch.no_grad():
        _, val_items = compute_loss(ema.ema.eval()(imgs)[1], targets)
    assert torch.isfinite(val_items).all(), val_items


@pytest.mark.parametrize('hyp', [pytest.param(h, marks=() if h.stem in ('varifocal', 'wiou-v3') else pytest.mark.slow)
                                 for h in HYPS], ids=lambda p: p.stem)
def test_each_shipped_hyp_trains_with_finite_losses(tree, tiny_data, hyp, tmp_path):
    # the stock train.py on each hyp (slow but two: the in-process test above covers every hyp's losses)
    import csv
    run_script(tree, 'train.py', '--data', tiny_data, '--cfg', 'yolov5n.yaml', '--weights', '', '--img', 64,
               '--epochs', 1, '--batch', 8, '--workers', 0, '--hyp', f'hyp.scratch-low.yaml,{hyp}', '--project',
               tmp_path, '--name', 'h',
               '--noplots')
    with open(tmp_path / 'h' / 'results.csv') as f:
        row = {k.strip(): float(v) for k, v in next(csv.DictReader(f)).items()}
    for key in ('train/box_loss', 'train/obj_loss', 'train/cls_loss', 'val/box_loss', 'val/obj_loss'):
        assert math.isfinite(row[key]), key


# ---- Against the papers' equations (tests/loss_reference.py, float64): value and autograd gradient on random
# boxes, and what each hyp key and value builds in ComputeLoss on a real model

BOX_TYPES = ['IoU', 'GIoU', 'DIoU', 'CIoU', 'EIoU', 'FocalEIoU', 'SIoU', 'WIoUv1', 'WIoUv2', 'WIoUv3', 'MPDIoU']
ALPHA_TYPES = ['IoU', 'GIoU', 'DIoU', 'CIoU', 'EIoU']
HYP_CASES = [  # every iou_type at its defaults (the papers'), then every other box-loss key at a non-default value
    *({'iou_type': k} for k in BOX_TYPES),
    *({'iou_type': k, 'alpha_iou': 3.0} for k in ALPHA_TYPES),
    {'iou_type': 'FocalEIoU', 'focal_eiou_gamma': 1.0},
    {'iou_type': 'SIoU', 'siou_theta': 2.0},
    {'iou_type': 'WIoUv2', 'wiou_gamma': 0.8},
    {'iou_type': 'WIoUv3', 'wiou_alpha': 2.5, 'wiou_delta': 2.0},
    {'iou_type': 'IoU', 'nwd_ratio': 1.0},
    {'iou_type': 'CIoU', 'nwd_ratio': 0.4, 'nwd_constant': 6.4},
    {'iou_type': 'MPDIoU', 'nwd_ratio': 0.5},
]
SHAPE = (2, 3, 16, 20, 8)  # a layer's prediction shape: grid 20 x 16, MPDIoU's image size in grid units


def hyp_id(hyp):
    return ','.join(f'{k}={v}' for k, v in hyp.items())


def random_boxes(n=64, seed=0):
    """Targets and predictions around them (grid units, float64): mostly overlapping, some disjoint, none
    degenerate, no ties in the min/max of the edges."""
    g = torch.Generator().manual_seed(seed)
    t = torch.cat([2 + 6 * torch.rand(n, 2, generator=g), 0.5 + 3 * torch.rand(n, 2, generator=g)], 1).double()
    p = torch.cat([t[:, :2] + torch.randn(n, 2, generator=g, dtype=torch.float64),
                   t[:, 2:] * torch.exp(0.5 * torch.randn(n, 2, generator=g, dtype=torch.float64))], 1)
    return p.requires_grad_(), t


def assert_value_and_grad(loss, expected, p, rtol=1e-4, atol=1e-5):
    # the code computes in float32, the reference in float64
    torch.testing.assert_close(loss.double(), expected, rtol=rtol, atol=atol)
    (grad,) = torch.autograd.grad(loss.sum(), p, retain_graph=True)
    (expected_grad,) = torch.autograd.grad(expected.sum(), p, retain_graph=True)
    torch.testing.assert_close(grad.double(), expected_grad, rtol=10 * rtol, atol=atol)


def test_cases_cover_every_option(lo):
    # a new iou_type or class/objectness loss must be added to these tests
    assert sorted(lo.IOU_TYPES) == sorted(BOX_TYPES) and sorted(lo.ALPHA_BASES) == sorted(ALPHA_TYPES)
    assert sorted(lo.CLS_OBJ_LOSSES) == sorted({name for _, _, name, _ in CRITERIA if name != 'upstream'})
    tested = {k for h in HYP_CASES for k in h} | {'wiou_momentum', 'vfl_alpha', 'vfl_gamma'}  # the last: below
    assert tested == set(lo.NUMERIC_KEYS) - {'ema_decay', 'ema_tau'} | {'iou_type'}


@pytest.mark.parametrize('hyp', HYP_CASES, ids=hyp_id)
def test_box_loss_value_and_gradient_match_the_paper(lo, hyp):
    # layer 1 (stride 16 for NWD); a WIoU v2/v3 running mean at its start, 1 (the next test moves it)
    p, t = random_boxes()
    loss, _ = box_loss(lo, **hyp)(p, t, 1, SHAPE)
    assert_value_and_grad(loss, ref.box_loss(hyp, p, t, stride=16.0, img_wh=(20, 16)), p)


@pytest.mark.parametrize('hyp', [{'iou_type': 'WIoUv2'}, {'iou_type': 'WIoUv3'}], ids=hyp_id)
def test_wiou_mean_and_beta_are_constants_in_the_gradient(lo, hyp):
    # Wise-IoU: beta = L_IoU* / mean(L_IoU), L_IoU detached and the mean a running statistic. A second call (as the
    # next detection layer) on the same boxes must see the moved mean as a plain number: no graph through it
    p, t = random_boxes(seed=1)
    loss_fn = box_loss(lo, **hyp, wiou_momentum=0.5)
    loss_fn(p, t, 0, SHAPE)  # a training call: it moves the mean
    mean = float(loss_fn.wiou.iou_mean)
    assert abs(mean - 1.0) > 0.05
    loss, _ = loss_fn(p, t, 1, SHAPE)
    assert_value_and_grad(loss, ref.box_loss(hyp, p, t, wiou_mean=mean), p)


def test_wiou_v2_is_not_v1(lo):
    # v2's focusing factor (L_IoU*/mean)^0.5 differs from 1 for boxes whose loss is not the mean
    p, t = random_boxes(seed=2)
    v1, _ = box_loss(lo, iou_type='WIoUv1')(p, t, 0, SHAPE)
    v2, _ = box_loss(lo, iou_type='WIoUv2')(p, t, 0, SHAPE)
    beta = (1 - ref.overlap_terms(p, t)[0]).detach()  # mean 1: its start
    torch.testing.assert_close(v2.double(), beta ** 0.5 * v1.double(), rtol=1e-5, atol=1e-6)
    assert (v2 - v1).abs().max() > 0.01


@pytest.fixture(scope='module')
def yolov5n(yolo):
    from models.yolo import Model
    torch.manual_seed(0)
    return Model(str(yolo / 'models' / 'yolov5n.yaml'), nc=3)


def compute_loss_for(yolo, model, **hyp):
    """ComputeLoss as train.py builds it, from the model and its hyp (upstream's scratch-low plus `hyp`)."""
    from utils.loss import ComputeLoss
    model.hyp = {**yaml.safe_load((yolo / 'data' / 'hyps' / 'hyp.scratch-low.yaml').read_text()), **hyp}
    vars(model).pop('loss_state', None)  # a fresh WIoU running mean
    return ComputeLoss(model)


# image, class, x, y, w, h (normalised): small, medium and large boxes, so every detection layer gets targets
TARGETS = torch.tensor([[0, 1, 0.30, 0.40, 0.10, 0.15], [0, 0, 0.60, 0.55, 0.40, 0.50], [1, 2, 0.50, 0.50, 0.80, 0.70],
                        [1, 0, 0.25, 0.70, 0.20, 0.30], [1, 1, 0.70, 0.30, 0.55, 0.45]])


def head_outputs(model, img_hw=(64, 96), bs=2, seed=0):
    """Random Detect outputs for a batch, one (bs, anchors, ny, nx, 5 + classes) tensor per layer; a rectangular
    image (as val.py's rect batches), so width and height cannot stand in for each other."""
    g = torch.Generator().manual_seed(seed)
    m, (h, w) = model.model[-1], img_hw
    return [torch.randn(bs, m.na, h // int(s), w // int(s), m.no, generator=g).requires_grad_() for s in m.stride]


def reference_lbox(compute_loss, model, p, targets, hyp):
    """The box term from the paper's loss: upstream's target matching and box decoding (v7.0 code, not under test),
    then each layer's loss at that layer's stride and grid, and WIoU's running mean moving layer after layer."""
    tcls, tbox, indices, anchors = compute_loss.build_targets(p, targets)
    lbox, mean, momentum = 0.0, 1.0, hyp.get('wiou_momentum')
    for i, pi in enumerate(p):
        b, a, gj, gi = indices[i]
        assert len(b), f'no target on layer {i}: the test would not see it'
        ps = pi[b, a, gj, gi].double()
        pbox = torch.cat((ps[:, :2].sigmoid() * 2 - 0.5, (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors[i]), 1)
        tb = tbox[i].double()
        lbox = lbox + ref.box_loss(hyp, pbox, tb, stride=float(model.stride[i]), img_wh=(pi.shape[3], pi.shape[2]),
                                   wiou_mean=mean).mean()
        if momentum:
            mean = (1 - momentum) * mean + momentum * (1 - ref.overlap_terms(pbox, tb)[0]).mean().item()
    return lbox * compute_loss.hyp['box']


@pytest.mark.parametrize('hyp', HYP_CASES, ids=hyp_id)
def test_hyp_builds_the_named_box_loss_on_every_layer(yolo, yolov5n, hyp):
    # the hyp through train.py's path (model.hyp -> ComputeLoss): box loss value and gradient on the head outputs
    # against the paper's loss, per layer (each its own stride: NWD; grid: MPDIoU). obj and cls gains 0: the
    # returned loss is then the box term alone, batch-size times
    assert yolov5n.stride.tolist() == [8.0, 16.0, 32.0]
    if hyp['iou_type'] in ('WIoUv2', 'WIoUv3'):
        hyp = {**hyp, 'wiou_momentum': 0.3}  # the mean moves visibly between layers
    compute_loss = compute_loss_for(yolo, yolov5n, obj=0.0, cls=0.0, **hyp)
    p = head_outputs(yolov5n)
    loss, items = compute_loss(p, TARGETS)
    expected = reference_lbox(compute_loss, yolov5n, p, TARGETS, hyp)
    assert items[0].item() == pytest.approx(expected.item(), rel=1e-5)
    grads = torch.autograd.grad(loss.sum(), p)
    expected_grads = torch.autograd.grad(expected * p[0].shape[0], p)
    for i, (g, e) in enumerate(zip(grads, expected_grads)):
        torch.testing.assert_close(g, e, rtol=1e-3, atol=1e-7, msg=lambda m: f'layer {i}: {m}')


def test_nwd_uses_each_detection_layers_own_stride(yolo, yolov5n):
    # the same boxes in grid units are stride-times larger in pixels on a coarser layer: NWD must see that
    compute_loss = compute_loss_for(yolo, yolov5n, iou_type='IoU', nwd_ratio=1.0)
    p, t = torch.tensor([[4.0, 4.0, 2.0, 1.0]]), torch.tensor([[4.3, 3.8, 2.4, 1.3]])
    losses = []
    for i, stride in enumerate(yolov5n.stride.tolist()):
        loss, _ = compute_loss.box_loss(p, t, i, (1, 3, 64 // int(stride), 64 // int(stride), 8))
        assert loss.item() == pytest.approx(1 - ref.nwd(p.double(), t.double(), 12.8, stride).item(), rel=1e-5), i
        losses.append(loss.item())
    assert losses[0] < losses[1] < losses[2]


LOGITS = torch.tensor([[2.0, -1.0, 0.3], [-3.0, 0.5, 1.5]])
LABELS = torch.tensor([[0.8, 0.0, 1.0], [0.0, 0.4, 0.0]])  # soft (IoU) and hard positives, negatives


def reference_criterion(name, pos_weight, gamma, vfl_alpha=0.75, vfl_gamma=2.0):
    """Mean over elements of BCE with pos_weight times each criterion's weight."""
    p, y = LOGITS.double().sigmoid(), LABELS.double()
    bce = -(pos_weight * y * p.log() + (1 - y) * (1 - p).log())
    alpha_t = y * 0.25 + (1 - y) * 0.75  # upstream's focal alpha 0.25
    weight = {'bce': 1.0,
              'focal': alpha_t * (1 - (y * p + (1 - y) * (1 - p))) ** gamma,  # Lin et al. 2017: (1 - p_t)^gamma
              'qfocal': alpha_t * (y - p).abs() ** gamma,  # Li et al. 2020 (GFL): |y - p|^beta
              'varifocal': torch.where(y > 0, y, vfl_alpha * p ** vfl_gamma)}[name]  # Zhang et al. 2021: q or a p^g
    return (bce * weight).mean().item()


CRITERIA = [  # (hyp value, fl_gamma, what it builds, focal gamma)
    (None, 0.0, 'upstream', 0.0), (None, 2.0, 'upstream', 2.0),  # unset: upstream's BCE, or Focal when fl_gamma > 0
    ('bce', 2.0, 'bce', 0.0), ('BCE', 0.0, 'bce', 0.0),
    ('focal', 0.0, 'focal', 1.5), ('focal', 2.0, 'focal', 2.0),  # fl_gamma 0: upstream's FocalLoss default, 1.5
    ('qfocal', 0.0, 'qfocal', 1.5), ('QFocal', 2.0, 'qfocal', 2.0),
    ('varifocal', 0.0, 'varifocal', 0.0), ('varifocal', 2.0, 'varifocal', 0.0),
]


@pytest.mark.parametrize('key', ['cls_loss', 'obj_loss'])
@pytest.mark.parametrize('value,fl_gamma,name,gamma', CRITERIA, ids=lambda v: str(v))
def test_hyp_builds_the_named_cls_obj_criterion(yolo, yolov5n, key, value, fl_gamma, name, gamma):
    # each criterion's output on fixed logits against its formula, each with its own pos_weight; the other key,
    # unset, keeps upstream's choice
    pw = {'cls_loss': 1.3, 'obj_loss': 0.8}
    hyp = {'cls_pw': pw['cls_loss'], 'obj_pw': pw['obj_loss'], 'fl_gamma': fl_gamma}
    compute_loss = compute_loss_for(yolo, yolov5n, **hyp, **({key: value} if value else {}))
    chosen, other = {'cls_loss': (compute_loss.BCEcls, compute_loss.BCEobj),
                     'obj_loss': (compute_loss.BCEobj, compute_loss.BCEcls)}[key]
    other_key = 'obj_loss' if key == 'cls_loss' else 'cls_loss'
    upstream = 'focal' if fl_gamma else 'bce'
    assert chosen(LOGITS, LABELS).item() == pytest.approx(
        reference_criterion(upstream if name == 'upstream' else name, pw[key], gamma), rel=1e-5)
    assert other(LOGITS, LABELS).item() == pytest.approx(reference_criterion(upstream, pw[other_key], fl_gamma),
                                                         rel=1e-5)


def test_varifocal_parameters_reach_the_criterion(yolo, yolov5n):
    compute_loss = compute_loss_for(yolo, yolov5n, cls_loss='varifocal', vfl_alpha=0.5, vfl_gamma=1.0)
    assert compute_loss.BCEcls(LOGITS, LABELS).item() == pytest.approx(
        reference_criterion('varifocal', 1.0, 0.0, vfl_alpha=0.5, vfl_gamma=1.0), rel=1e-5)
