# BiFPN fusion nodes (Tan et al., EfficientDet, CVPR 2020): learnable fast normalised weights on the inputs, then
# concatenation (BiFPN_Concat2/3) or the EfficientDet sum, activation and 1x1 convolution (BiFPN_Add2/3)
import torch
import torch.nn as nn

from models.common import Conv
from models.yaml_rules import concat_fusion, sum_fusion


class FastNormalizedFusion(nn.Module):
    # w_i = relu(w_i) / (sum_j relu(w_j) + eps), one weight per input: "fast normalized fusion"
    n_inputs = None  # fixed by the subclasses below, as the posts' YAML names say
    eps = 1e-4

    def raw_weights(self, n_inputs):
        return self.w

    def fusion_weights(self, n_inputs=None):
        w = torch.relu(self.raw_weights(n_inputs))
        return w / (w.sum() + self.eps)

    def weighted_sum(self, x):
        w = self.fusion_weights(len(x))
        return sum(w[i] * xi for i, xi in enumerate(x))


class BiFPN_Concat(FastNormalizedFusion):
    # output = concat(w_i * x_i); YAML [dimension], `from` lists the inputs
    yaml_rule = concat_fusion

    def __init__(self, dimension=1, eps=1e-4):
        super().__init__()
        self.d = dimension
        self.eps = eps
        self.w = nn.Parameter(torch.ones(self.n_inputs))

    def forward(self, x):
        w = self.fusion_weights()
        return torch.cat([w[i] * xi for i, xi in enumerate(x)], self.d)


class BiFPN_Concat2(BiFPN_Concat):
    # weighted concatenation of two feature maps
    yaml_names = ('BiFPN_Concat2',)
    n_inputs = 2


class BiFPN_Concat3(BiFPN_Concat):
    # weighted concatenation of three feature maps (bottom-up node with the same-level backbone skip)
    yaml_names = ('BiFPN_Concat3',)
    n_inputs = 3


class BiFPN_Add(FastNormalizedFusion):
    # output = conv1x1(SiLU(sum_i w_i * x_i)) over same-shaped inputs (EfficientDet's node, the posts' BiFPN_Add).
    # YAML [c1, c2] as the posts write it; the channels are taken from the inputs, which must agree
    yaml_rule = sum_fusion

    def __init__(self, channels):
        super().__init__()
        self.w = nn.Parameter(torch.ones(self.n_inputs))
        self.act = nn.SiLU()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return self.conv(self.act(self.weighted_sum(x)))


class BiFPN_Add2(BiFPN_Add):
    # weighted sum of two feature maps
    yaml_names = ('BiFPN_Add2',)
    n_inputs = 2


class BiFPN_Add3(BiFPN_Add):
    # weighted sum of three feature maps
    yaml_names = ('BiFPN_Add3',)
    n_inputs = 3


class BiFPNAddConv(FastNormalizedFusion):
    # yoloair's Concat_bifpn, despite its name a weighted sum of 2 or 3 inputs: weights for each count, ReLU, then
    # YOLOv5's Conv 1x1 (conv, BN, SiLU). YAML [c1, c2]; channels from the inputs
    yaml_names = ('Concat_bifpn',)
    yaml_rule = sum_fusion
    n_inputs = (2, 3)

    def __init__(self, channels):
        super().__init__()
        self.w1 = nn.Parameter(torch.ones(2))
        self.w2 = nn.Parameter(torch.ones(3))
        self.act = nn.ReLU()
        self.conv = Conv(channels, channels, 1, 1, 0)

    def raw_weights(self, n_inputs):
        return self.w1 if n_inputs == 2 else self.w2

    def forward(self, x):
        return self.conv(self.act(self.weighted_sum(x)))
