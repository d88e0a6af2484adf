# CA: coordinate attention (Hou et al., CVPR 2021), as the posts add it (YAML CoordAtt, C3_CA)
import torch
import torch.nn as nn

from models.c3_attention import c3_family
from models.common import Conv
from models.yaml_rules import attention


class BiasedConv(Conv):
    # upstream's Conv (conv, BN, activation) with the paper's biased 1x1 convolution, so that Model.fuse() folds BN
    def __init__(self, c1, c2, act):
        super().__init__(c1, c2, 1, act=act)
        self.conv = nn.Conv2d(c1, c2, 1)


class CoordAtt(nn.Module):
    # pool along W and along H, shared 1x1 conv (C -> max(8, C/r)) + BN + h-swish, then per-direction 1x1 convs and
    # sigmoids: y = x * g_h * g_w (the paper's Eqs. 4-9)
    yaml_names = ('CoordAtt', 'CA', 'CoordAttn')
    yaml_rule = attention  # YAML [channels, reduction=32]

    def __init__(self, channels, reduction=32):
        super().__init__()
        self.check_args(channels, reduction)
        mid = max(8, channels // reduction)
        self.conv1 = BiasedConv(channels, mid, act=nn.Hardswish())  # conv, BN, h-swish
        self.conv_h = nn.Conv2d(mid, channels, 1)
        self.conv_w = nn.Conv2d(mid, channels, 1)

    @staticmethod
    def check_args(channels, reduction=32):
        if reduction < 1:
            raise ValueError(f'CoordAtt reduction {reduction} must be at least 1 (the paper uses 32)')

    def forward(self, x):
        h, w = x.shape[2:]
        pooled = torch.cat([x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)], 2)  # (b, c, h + w, 1)
        y_h, y_w = self.conv1(pooled).split([h, w], 2)
        return x * self.conv_h(y_h).sigmoid() * self.conv_w(y_w.transpose(2, 3)).sigmoid()


C3_CA, C3_CA1, C3_CA2, C3_CA3 = c3_family(CoordAtt, 'C3_CA', aliases=('C3CA', 'C3_CoordAtt'))
