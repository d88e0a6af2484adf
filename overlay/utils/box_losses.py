# IoU-family box regression losses, each from its paper, on (x, y, w, h) boxes; computed in float32
import math

import torch

EPS = 1e-7


def box_geometry(b1, b2, eps=EPS):
    # Shared terms of every IoU loss for matching rows of two (n, 4) xywh tensors
    (x1, y1, w1, h1), (x2, y2, w2, h2) = b1.float().unbind(-1), b2.float().unbind(-1)
    w1, h1, w2, h2 = w1.clamp(min=0), h1.clamp(min=0), w2.clamp(min=0), h2.clamp(min=0)
    l1, r1, t1, d1 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    l2, r2, t2, d2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (torch.min(r1, r2) - torch.max(l1, l2)).clamp(0) * (torch.min(d1, d2) - torch.max(t1, t2)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    cw = torch.max(r1, r2) - torch.min(l1, l2)  # enclosing box
    ch = torch.max(d1, d2) - torch.min(t1, t2)
    return dict(x1=x1, y1=y1, w1=w1, h1=h1, x2=x2, y2=y2, w2=w2, h2=h2, l1=l1, t1=t1, r1=r1, d1=d1, l2=l2, t2=t2,
                r2=r2, d2=d2, iou=inter / union, union=union, cw=cw, ch=ch, c2=cw ** 2 + ch ** 2 + eps,
                rho2=(x2 - x1) ** 2 + (y2 - y1) ** 2)


def iou_family_loss(g, kind, alpha=1.0, eps=EPS):
    # IoU, GIoU, DIoU, CIoU, EIoU; alpha != 1 is Alpha-IoU (He et al. 2021): IoU and each penalty to the power alpha
    iou = g['iou'].clamp(min=eps) ** alpha if alpha != 1 else g['iou']
    penalties = []
    if kind == 'giou':
        c_area = g['cw'] * g['ch'] + eps
        penalties.append((c_area - g['union']) / c_area)
    if kind in ('diou', 'ciou', 'eiou'):
        penalties.append(g['rho2'] / g['c2'])
    if kind == 'ciou':
        v = (4 / math.pi ** 2) * (torch.atan(g['w2'] / (g['h2'] + eps)) - torch.atan(g['w1'] / (g['h1'] + eps))) ** 2
        with torch.no_grad():
            beta = v / (v - g['iou'] + (1 + eps))
        penalties.append(beta * v)
    if kind == 'eiou':  # Zhang et al. 2021: width and height differences over the enclosing box's
        penalties += [(g['w1'] - g['w2']) ** 2 / (g['cw'] ** 2 + eps), (g['h1'] - g['h2']) ** 2 / (g['ch'] ** 2 + eps)]
    if alpha != 1:
        penalties = [(p.clamp(min=0) + eps) ** alpha for p in penalties]
    return 1 - iou + sum(penalties) if penalties else 1 - iou


def focal_eiou_loss(g, gamma=0.5, eps=EPS):
    # Focal-EIoU (Zhang et al. 2021): IoU^gamma * L_EIoU, the IoU weight not back-propagated
    return g['iou'].detach().clamp(min=0) ** gamma * iou_family_loss(g, 'eiou', eps=eps)


def siou_loss(g, theta=4.0, eps=EPS):
    # SIoU (Gevorgyan 2022): 1 - IoU + (distance cost + shape cost) / 2, distance cost shaped by the angle cost
    dx, dy = g['x2'] - g['x1'], g['y2'] - g['y1']
    angle = 2 * dx.abs() * dy.abs() / (g['rho2'] + eps)  # 1 - 2 sin^2(arcsin(|dy| / sigma) - pi/4) = sin(2 alpha)
    gamma = 2 - angle
    distance = (1 - torch.exp(-gamma * (dx / (g['cw'] + eps)) ** 2)) + (1 - torch.exp(-gamma * (dy / (g['ch'] + eps)) ** 2))
    omega_w = (g['w1'] - g['w2']).abs() / (torch.max(g['w1'], g['w2']) + eps)
    omega_h = (g['h1'] - g['h2']).abs() / (torch.max(g['h1'], g['h2']) + eps)
    shape = (1 - torch.exp(-omega_w)) ** theta + (1 - torch.exp(-omega_h)) ** theta
    return 1 - g['iou'] + (distance + shape) / 2


class WIoU:
    # Wise-IoU v1/v2/v3 (Tong et al. 2023); v2 and v3 keep a running mean of the IoU loss across training batches.
    # The mean lives in `state` (the model's loss_state dict) so checkpoints carry it and --resume continues it
    def __init__(self, version=3, gamma=0.5, alpha=1.9, delta=3.0, momentum=1 - 0.5 ** (1 / 7000), state=None):
        self.version, self.gamma, self.alpha, self.delta, self.momentum = version, gamma, alpha, delta, momentum
        self.state = {} if state is None else state
        self.state.setdefault('wiou_iou_mean', 1.0)  # as the paper initialises it

    @property
    def iou_mean(self):
        return self.state['wiou_iou_mean']

    def __call__(self, g, training=True, eps=EPS):
        l_iou = 1 - g['iou']
        r_wiou = torch.exp(g['rho2'] / (g['cw'] ** 2 + g['ch'] ** 2 + eps).detach())  # distance attention, v1
        loss = r_wiou * l_iou
        if self.version == 1:
            return loss
        beta = l_iou.detach() / self.iou_mean  # outlier degree
        if training and l_iou.numel():  # the paper's running mean follows training batches only
            self.state['wiou_iou_mean'] = (1 - self.momentum) * self.iou_mean + \
                self.momentum * l_iou.detach().mean().item()
        if self.version == 2:  # monotonic focusing
            return beta ** self.gamma * loss
        return beta / (self.delta * self.alpha ** (beta - self.delta)) * loss  # v3: non-monotonic focusing


def wiou_momentum(updates_per_epoch, epochs):
    # The paper's m = 1 - 0.05^(1/(t n)): after t epochs of n updates the initial mean weighs 5%. Its t is the epoch
    # where mAP stops rising fast; known only afterwards, so half the run (YOLOv5's linear LR decay, ~most of the gain)
    t_n = max(1.0, updates_per_epoch * max(epochs, 1) / 2)
    return 1 - 0.05 ** (1 / t_n)


def mpdiou_loss(g, img_w, img_h):
    # MPDIoU (Ma and Xu 2023): IoU minus squared top-left and bottom-right corner distances over the image diagonal^2
    norm = img_w ** 2 + img_h ** 2
    d_tl = (g['l1'] - g['l2']) ** 2 + (g['t1'] - g['t2']) ** 2
    d_br = (g['r1'] - g['r2']) ** 2 + (g['d1'] - g['d2']) ** 2
    return 1 - (g['iou'] - d_tl / norm - d_br / norm)


def nwd(g, constant, scale=1.0, eps=EPS):
    # Normalized Gaussian Wasserstein distance (Wang et al. 2021); boxes as 2-D Gaussians, `scale` converts to pixels
    w2 = (g['x1'] - g['x2']) ** 2 + (g['y1'] - g['y2']) ** 2 + ((g['w1'] - g['w2']) / 2) ** 2 + \
        ((g['h1'] - g['h2']) / 2) ** 2
    return torch.exp(-torch.sqrt(w2 + eps) * scale / constant)
