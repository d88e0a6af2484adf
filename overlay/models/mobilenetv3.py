# MobileNetV3 building blocks (Howard et al., "Searching for MobileNetV3", ICCV 2019), for YOLOv5 backbones. Built
# from upstream's Conv (conv + BN + activation) so that Model.fuse() folds their BatchNorms as it does YOLOv5's own
import torch.nn as nn

from models.common import Conv
from models.yaml_rules import fixed_channels
from utils.general import make_divisible


class Conv_BN_HSwish(Conv):
    # MobileNetV3 stem: 3x3 convolution, BatchNorm, hard-swish; YAML [out, stride], the paper's channels
    yaml_names = ('Conv_BN_HSwish',)
    yaml_rule = fixed_channels

    def __init__(self, c1, c2, s=2):
        super().__init__(c1, c2, 3, s, act=nn.Hardswish())


class SqueezeExcite(nn.Module):
    # Squeeze-and-excitation as in MobileNetV3: reduce to 1/4 (divisible by 8), ReLU, hard-sigmoid gate
    def __init__(self, c, reduction=4):
        super().__init__()
        c_ = make_divisible(c // reduction, 8)
        self.fc1 = nn.Conv2d(c, c_, 1)
        self.fc2 = nn.Conv2d(c_, c, 1)
        self.act = nn.ReLU(inplace=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))


class MobileNetV3_Block(nn.Module):
    # "bneck": 1x1 expansion, kxk depthwise (stride s), optional SE, 1x1 linear projection; residual if shape kept.
    # YAML [out, expand, kernel, stride, SE, hard-swish] with the paper's channels (not width-scaled)
    yaml_names = ('MobileNetV3_Block',)
    yaml_rule = fixed_channels

    def __init__(self, c1, c2, expand, k=3, s=1, use_se=False, use_hs=False):
        super().__init__()
        act = nn.Hardswish if use_hs else nn.ReLU
        layers = [Conv(c1, expand, 1, act=act())] if expand != c1 else []
        layers.append(Conv(expand, expand, k, s, g=expand, act=act()))  # depthwise
        if use_se:
            layers.append(SqueezeExcite(expand))
        layers.append(Conv(expand, c2, 1, act=False))  # linear projection
        self.block = nn.Sequential(*layers)
        self.residual = s == 1 and c1 == c2

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y
