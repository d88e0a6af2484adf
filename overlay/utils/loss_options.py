# Loss and weight-EMA options read from the hyp YAML (model.hyp): validation, and the objects ComputeLoss uses
import math

import torch
import torch.nn as nn

from utils import box_losses as bl

IOU_TYPES = ('IoU', 'GIoU', 'DIoU', 'CIoU', 'EIoU', 'FocalEIoU', 'SIoU', 'WIoUv1', 'WIoUv2', 'WIoUv3', 'MPDIoU')
ALPHA_BASES = ('IoU', 'GIoU', 'DIoU', 'CIoU', 'EIoU')
CLS_OBJ_LOSSES = ('bce', 'focal', 'qfocal', 'varifocal')
# key: (default, check, what a valid value is); defaults are the papers'; None: derived from the run
NUMERIC_KEYS = {
    'alpha_iou': (1.0, lambda v: v > 0, 'a number > 0 (1 = off; the paper uses 3)'),
    'focal_eiou_gamma': (0.5, lambda v: v >= 0, 'a number >= 0'),
    'siou_theta': (4.0, lambda v: 2 <= v <= 6, 'a number in [2, 6]'),
    'wiou_gamma': (0.5, lambda v: v > 0, 'a number > 0'),
    'wiou_alpha': (1.9, lambda v: v > 1, 'a number > 1'),
    'wiou_delta': (3.0, lambda v: v > 0, 'a number > 0'),
    'wiou_momentum': (None, lambda v: 0 < v <= 1, 'a number in (0, 1] (unset: from the run length)'),
    'nwd_ratio': (0.0, lambda v: 0 <= v <= 1, 'a number in [0, 1] (0 = off, 1 = NWD alone)'),
    'nwd_constant': (12.8, lambda v: v > 0, 'a number > 0 (pixels; the paper uses 12.8)'),
    'vfl_alpha': (0.75, lambda v: v > 0, 'a number > 0'),
    'vfl_gamma': (2.0, lambda v: v >= 0, 'a number >= 0'),
    'ema_decay': (0.9999, lambda v: 0 <= v < 1, 'a number in [0, 1) (0 = EMA off)'),
    'ema_tau': (2000.0, lambda v: v > 0, 'a number > 0 (updates)'),
}
NEW_KEYS = ('iou_type', 'cls_loss', 'obj_loss', *NUMERIC_KEYS)
WIOU_MOMENTUM_UNKNOWN_RUN = 1 - 0.5 ** (1 / 7000)  # ComputeLoss outside train.py: half-life 7000 updates


def _choice(hyp, key, choices, default):
    value = hyp.get(key, default)
    match = {c.lower(): c for c in choices}.get(str(value).lower()) if value is not None else None
    if match is None:
        raise ValueError(f"hyp {key}={value!r} is not valid; choose one of: {', '.join(choices)}")
    return match


def validate_loss_hyp(hyp):
    """The new hyp keys with defaults filled in; ValueError naming the key, the value and the valid choices."""
    opt = {'iou_type': _choice(hyp, 'iou_type', IOU_TYPES, 'CIoU'),
           'cls_loss': _choice(hyp, 'cls_loss', CLS_OBJ_LOSSES, 'bce') if hyp.get('cls_loss') is not None else None,
           'obj_loss': _choice(hyp, 'obj_loss', CLS_OBJ_LOSSES, 'bce') if hyp.get('obj_loss') is not None else None}
    for key, (default, ok, valid) in NUMERIC_KEYS.items():
        value = hyp.get(key, default)
        if value is None and default is None:
            opt[key] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
            raise ValueError(f'hyp {key}={value!r} is not valid; it must be {valid}')
        opt[key] = float(value)
    if opt['alpha_iou'] != 1 and opt['iou_type'] not in ALPHA_BASES:
        raise ValueError(f"hyp alpha_iou={opt['alpha_iou']} applies to iou_type {', '.join(ALPHA_BASES)}, "
                         f"not {opt['iou_type']}")
    return opt


class BoxLoss:
    # Box term for one detection layer: (per-box loss, IoU for the objectness target). The objectness target is
    # the plain IoU for every non-default loss (see README: box losses). `state`: the model's loss_state dict
    def __init__(self, opt, strides, state=None):
        self.opt, self.strides = opt, [float(s) for s in strides]
        t = opt['iou_type']
        self.wiou = bl.WIoU(int(t[-1]), opt['wiou_gamma'], opt['wiou_alpha'], opt['wiou_delta'],
                            opt['wiou_momentum'] or WIOU_MOMENTUM_UNKNOWN_RUN, state) if t.startswith('WIoU') else None

    def __call__(self, pbox, tbox, layer, shape):
        g = bl.box_geometry(pbox, tbox)
        t, o = self.opt['iou_type'], self.opt
        if t in ALPHA_BASES:
            loss = bl.iou_family_loss(g, t.lower(), o['alpha_iou'])
        elif t == 'FocalEIoU':
            loss = bl.focal_eiou_loss(g, o['focal_eiou_gamma'])
        elif t == 'SIoU':
            loss = bl.siou_loss(g, o['siou_theta'])
        elif self.wiou:  # its running mean moves on training batches only: they back-propagate, val.py's do not
            loss = self.wiou(g, training=pbox.requires_grad and torch.is_grad_enabled())
        else:  # MPDIoU, normalised by the input image size: the grid size of this layer, in grid units
            loss = bl.mpdiou_loss(g, shape[3], shape[2])
        if o['nwd_ratio']:
            loss = (1 - o['nwd_ratio']) * loss + o['nwd_ratio'] * (1 - bl.nwd(g, o['nwd_constant'], self.strides[layer]))
        return loss, g['iou']


def box_loss_from_hyp(hyp, model):
    """None for upstream's CIoU (bit-identical default path), else a BoxLoss keeping its state on the model."""
    opt = validate_loss_hyp(hyp)
    if opt['iou_type'] == 'CIoU' and opt['alpha_iou'] == 1 and opt['nwd_ratio'] == 0:
        return None
    if not isinstance(getattr(model, 'loss_state', None), dict):
        model.loss_state = {}  # pickled with the model in every checkpoint; --resume restores it
    return BoxLoss(opt, model.model[-1].stride, model.loss_state)


def set_run_length(compute_loss, batches_per_epoch, epochs):
    """train.py, once the run's length is known: WIoU v2/v3 momentum from it unless the hyp sets wiou_momentum."""
    box = compute_loss.box_loss
    if box and box.wiou and box.opt['wiou_momentum'] is None:
        box.wiou.momentum = bl.wiou_momentum(batches_per_epoch * len(box.strides), epochs)  # one update per layer


def iou_class_targets(hyp):
    """VariFocal class loss (any spelling): class targets are the IoU, not the constant positive label."""
    return validate_loss_hyp(hyp)['cls_loss'] == 'varifocal'


class VarifocalLoss(nn.Module):
    # VariFocal (Zhang et al. CVPR 2021): BCE weighted by the IoU target q for positives, alpha * p^gamma for negatives
    def __init__(self, loss_fcn, alpha=0.75, gamma=2.0):
        super().__init__()
        self.loss_fcn, self.alpha, self.gamma = loss_fcn, alpha, gamma
        self.reduction = loss_fcn.reduction
        self.loss_fcn.reduction = 'none'

    def forward(self, pred, true):
        p = torch.sigmoid(pred)
        weight = torch.where(true > 0, true, self.alpha * p.pow(self.gamma))
        loss = self.loss_fcn(pred, true) * weight
        return loss.mean() if self.reduction == 'mean' else loss.sum() if self.reduction == 'sum' else loss


def select_cls_obj_losses(hyp, device, current_cls, current_obj):
    """Criteria for cls_loss / obj_loss; an unset key keeps upstream's choice (BCE, or Focal when fl_gamma > 0)."""
    from utils.loss import FocalLoss, QFocalLoss  # here: utils.loss imports this module
    opt = validate_loss_hyp(hyp)
    gamma = hyp.get('fl_gamma', 0) or 1.5  # upstream's focal gamma; its FocalLoss default when fl_gamma is 0

    def build(name, pos_weight, current):
        if name is None:
            return current
        bce = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([pos_weight], device=device))
        return {'bce': lambda: bce, 'focal': lambda: FocalLoss(bce, gamma), 'qfocal': lambda: QFocalLoss(bce, gamma),
                'varifocal': lambda: VarifocalLoss(bce, opt['vfl_alpha'], opt['vfl_gamma'])}[name]()

    return build(opt['cls_loss'], hyp['cls_pw'], current_cls), build(opt['obj_loss'], hyp['obj_pw'], current_obj)


def configure_weight_ema(ema, hyp):
    """ema_decay / ema_tau for ModelEMA's decay ramp d(u) = decay * (1 - exp(-u / tau)); decay 0 = EMA off."""
    if hyp is None or ('ema_decay' not in hyp and 'ema_tau' not in hyp):
        return False
    opt = validate_loss_hyp(hyp)
    decay, tau = opt['ema_decay'], opt['ema_tau']
    ema.decay = lambda x: decay * (1 - math.exp(-x / tau))
    return True
