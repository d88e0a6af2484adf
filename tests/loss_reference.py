"""Box losses written from their papers in plain float64 torch, for tests/test_losses.py.

Independent of utils/box_losses.py (nothing imported from it, no shared helper), so a test can compare the code
with the equations on value and on autograd gradient. `.detach()` marks what a paper treats as a constant in the
gradient. Boxes are (n, 4) xywh rows; pred and target rows match.
"""
import math

import torch


def edges(b):
    x, y, w, h = b.unbind(-1)
    return x - w / 2, y - h / 2, x + w / 2, y + h / 2  # left, top, right, bottom


def overlap_terms(p, t):
    """IoU, union area, enclosing box width and height, squared centre distance."""
    (pl, pt, pr, pb), (tl, tt, tr, tb) = edges(p), edges(t)
    iw = (torch.minimum(pr, tr) - torch.maximum(pl, tl)).clamp(min=0)
    ih = (torch.minimum(pb, tb) - torch.maximum(pt, tt)).clamp(min=0)
    union = p[:, 2] * p[:, 3] + t[:, 2] * t[:, 3] - iw * ih
    cw = torch.maximum(pr, tr) - torch.minimum(pl, tl)
    ch = torch.maximum(pb, tb) - torch.minimum(pt, tt)
    rho2 = (p[:, 0] - t[:, 0]) ** 2 + (p[:, 1] - t[:, 1]) ** 2
    return iw * ih / union, union, cw, ch, rho2


def iou_based(kind, p, t, alpha=1.0):
    """IoU, GIoU (Rezatofighi 2019), DIoU, CIoU (Zheng 2020), EIoU (Zhang 2021); alpha != 1: Alpha-IoU (He 2021),
    1 - IoU^a + each penalty^a (alpha-DIoU: rho^2a / c^2a; alpha-CIoU: (beta v)^a)."""
    iou, union, cw, ch, rho2 = overlap_terms(p, t)
    penalties = []
    if kind == 'GIoU':
        penalties.append((cw * ch - union) / (cw * ch))
    if kind in ('DIoU', 'CIoU', 'EIoU'):
        penalties.append(rho2 / (cw ** 2 + ch ** 2))
    if kind == 'CIoU':  # aspect term v, trade-off beta = v / ((1 - IoU) + v) a constant in the gradient
        v = 4 / math.pi ** 2 * (torch.atan(t[:, 2] / t[:, 3]) - torch.atan(p[:, 2] / p[:, 3])) ** 2
        penalties.append((v / (1 - iou + v)).detach() * v)
    if kind == 'EIoU':  # width and height differences over the enclosing box's
        penalties += [(p[:, 2] - t[:, 2]) ** 2 / cw ** 2, (p[:, 3] - t[:, 3]) ** 2 / ch ** 2]
    return 1 - iou ** alpha + sum(q ** alpha for q in penalties)


def focal_eiou(p, t, gamma=0.5):
    # Zhang et al. 2021: IoU^gamma * L_EIoU, the IoU weight a constant (as the code documents it)
    return overlap_terms(p, t)[0].detach() ** gamma * iou_based('EIoU', p, t)


def siou(p, t, theta=4.0):
    # Gevorgyan 2022: angle cost L = 1 - 2 sin^2(arcsin(|dy| / sigma) - pi/4); distance cost sum_x,y 1 -
    # exp(-(2 - L) (d / c)^2) on the enclosing box; shape cost sum_w,h (1 - exp(-|w - wgt| / max(w, wgt)))^theta
    iou, _, cw, ch, rho2 = overlap_terms(p, t)
    dx, dy = t[:, 0] - p[:, 0], t[:, 1] - p[:, 1]
    angle = 1 - 2 * torch.sin(torch.asin(dy.abs() / rho2.sqrt()) - math.pi / 4) ** 2
    gamma = 2 - angle
    distance = (1 - torch.exp(-gamma * (dx / cw) ** 2)) + (1 - torch.exp(-gamma * (dy / ch) ** 2))
    shape = sum((1 - torch.exp(-(a - b).abs() / torch.maximum(a, b))) ** theta
                for a, b in ((p[:, 2], t[:, 2]), (p[:, 3], t[:, 3])))
    return 1 - iou + (distance + shape) / 2


def wiou(p, t, version, mean=1.0, gamma=0.5, alpha=1.9, delta=3.0):
    # Tong et al. 2023. v1: exp(rho^2 / (Wg^2 + Hg^2)*) L_IoU, the enclosing size detached. beta = L_IoU* / mean:
    # L_IoU detached and the running mean a constant. v2: beta^gamma L_v1; v3: beta / (delta alpha^(beta - delta)) L_v1
    iou, _, cw, ch, rho2 = overlap_terms(p, t)
    l_iou = 1 - iou
    v1 = torch.exp(rho2 / (cw ** 2 + ch ** 2).detach()) * l_iou
    beta = l_iou.detach() / float(mean)
    if version == 1:
        return v1
    if version == 2:
        return beta ** gamma * v1
    return beta / (delta * alpha ** (beta - delta)) * v1


def mpdiou(p, t, img_w, img_h):
    # Ma and Xu 2023: 1 - (IoU - d_topleft^2 / (w^2 + h^2) - d_bottomright^2 / (w^2 + h^2)), w, h the input image's
    (pl, pt, pr, pb), (tl, tt, tr, tb) = edges(p), edges(t)
    d = img_w ** 2 + img_h ** 2
    return 1 - (overlap_terms(p, t)[0] - ((pl - tl) ** 2 + (pt - tt) ** 2) / d - ((pr - tr) ** 2 + (pb - tb) ** 2) / d)


def nwd(p, t, constant=12.8, scale=1.0):
    # Wang et al. 2021: W2^2 = ||(cx, cy, w/2, h/2)_1 - (cx, cy, w/2, h/2)_2||^2 in pixels (boxes times `scale`),
    # NWD = exp(-sqrt(W2^2) / C)
    a, b = p * scale, t * scale
    w2 = ((a[:, 0] - b[:, 0]) ** 2 + (a[:, 1] - b[:, 1]) ** 2 + (a[:, 2] / 2 - b[:, 2] / 2) ** 2
          + (a[:, 3] / 2 - b[:, 3] / 2) ** 2)
    return torch.exp(-w2.sqrt() / constant)


def box_loss(hyp, p, t, stride=1.0, img_wh=(20, 16), wiou_mean=1.0):
    """The per-box loss a hyp names (its keys, the papers' defaults), on boxes in grid units of a layer with this
    stride and grid size: what ComputeLoss should compute for one detection layer."""
    kind = hyp.get('iou_type', 'CIoU')
    if kind in ('IoU', 'GIoU', 'DIoU', 'CIoU', 'EIoU'):
        loss = iou_based(kind, p, t, hyp.get('alpha_iou', 1.0))
    elif kind == 'FocalEIoU':
        loss = focal_eiou(p, t, hyp.get('focal_eiou_gamma', 0.5))
    elif kind == 'SIoU':
        loss = siou(p, t, hyp.get('siou_theta', 4.0))
    elif kind.startswith('WIoU'):
        loss = wiou(p, t, int(kind[-1]), wiou_mean, hyp.get('wiou_gamma', 0.5), hyp.get('wiou_alpha', 1.9),
                    hyp.get('wiou_delta', 3.0))
    elif kind == 'MPDIoU':
        loss = mpdiou(p, t, *img_wh)
    else:
        raise KeyError(kind)
    r = hyp.get('nwd_ratio', 0.0)
    return (1 - r) * loss + r * (1 - nwd(p, t, hyp.get('nwd_constant', 12.8), stride)) if r else loss
