# EMA: Efficient Multi-Scale Attention with cross-spatial learning (Ouyang et al., ICASSP 2023), and C3 blocks with it
import torch
import torch.nn as nn

from models.common import C3


class EMA(nn.Module):
    # Efficient Multi-Scale Attention: channels split into `factor` groups, 1x1 (directional pooling) and
    # 3x3 branches, each branch's global context re-weighting the other's pixels (cross-spatial learning)
    def __init__(self, channels, factor=8):
        super().__init__()
        if factor < 1 or channels % factor:
            raise ValueError(f'EMA: {channels} channels are not divisible by factor {factor}')
        self.groups = factor
        cg = channels // factor
        self.gn = nn.GroupNorm(cg, cg)  # one group per channel: per-channel normalisation over (h, w)
        self.conv1x1 = nn.Conv2d(cg, cg, 1)
        self.conv3x3 = nn.Conv2d(cg, cg, 3, padding=1)

    def forward(self, x):
        b, c, h, w = x.shape
        gx = x.reshape(b * self.groups, c // self.groups, h, w)
        # 1x1 branch: pool along each axis, shared 1x1 conv, sigmoid gates
        hw = self.conv1x1(torch.cat([gx.mean(3, keepdim=True), gx.mean(2, keepdim=True).transpose(2, 3)], 2))
        gate_h, gate_w = hw.sigmoid().split([h, w], 2)
        y = gx * gate_h * gate_w.transpose(2, 3)
        # GroupNorm(y) is never materialised: only its per-channel statistics enter the result.
        # Its spatial mean is exactly the GN bias, and a weighted channel sum of GN(y) is an affine
        # function of the same weighted sum of y.
        var, mean = torch.var_mean(y, dim=(2, 3), unbiased=False)
        scale = self.gn.weight * torch.rsqrt(var + self.gn.eps)  # (bg, cg)
        x2 = self.conv3x3(gx)
        attn1 = self.gn.bias.softmax(0).expand(b * self.groups, -1)  # softmax(avgpool(GN(y)))
        attn2 = x2.mean((2, 3)).softmax(1)  # softmax(avgpool(x2))
        coef = attn2 * scale
        offset = (attn2 * (self.gn.bias - mean * scale)).sum(1)
        weights = (torch.bmm(attn1.unsqueeze(1), x2.flatten(2)) + torch.bmm(coef.unsqueeze(1), y.flatten(2))).view(
            b * self.groups, 1, h, w) + offset.view(-1, 1, 1, 1)
        return (gx * weights.sigmoid()).reshape(b, c, h, w)


class C3WithEMA(C3):
    # C3 holding one EMA module; subclasses say where it sits (attention_channels, forward)
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5, factor=8):
        super().__init__(c1, c2, n, shortcut, g, e)
        self.ema = EMA(self.attention_channels(c1, c2, e), factor)


class C3_EMA1(C3WithEMA):
    # C3 with EMA on the bottleneck branch, after cv1 (seed 004, placement 1)
    @staticmethod
    def attention_channels(c1, c2, e=0.5):
        return int(c2 * e)

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.ema(self.cv1(x))), self.cv2(x)), 1))


class C3_EMA2(C3WithEMA):
    # C3 with EMA on the input of the cv2 (shortcut) branch (seed 004, placement 2)
    @staticmethod
    def attention_channels(c1, c2, e=0.5):
        return c1

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(self.ema(x))), 1))


class C3_EMA3(C3WithEMA):
    # C3 with EMA on the concatenation, before cv3 (seed 004, placement 3)
    @staticmethod
    def attention_channels(c1, c2, e=0.5):
        return 2 * int(c2 * e)

    def forward(self, x):
        return self.cv3(self.ema(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1)))
