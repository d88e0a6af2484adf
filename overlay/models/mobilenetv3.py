# MobileNetV3 building blocks (Howard et al., "Searching for MobileNetV3", ICCV 2019), for YOLOv5 backbones
import torch.nn as nn

from utils.general import make_divisible


class Conv_BN_HSwish(nn.Module):
    # MobileNetV3 stem: 3x3 convolution, BatchNorm, hard-swish
    def __init__(self, c1, c2, s=2):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 3, s, 1, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.Hardswish()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


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
    # "bneck": 1x1 expansion, kxk depthwise (stride s), optional SE, 1x1 linear projection; residual if shape kept
    def __init__(self, c1, c2, expand, k=3, s=1, use_se=False, use_hs=False):
        super().__init__()
        act = nn.Hardswish if use_hs else nn.ReLU
        layers = []
        if expand != c1:
            layers += [nn.Conv2d(c1, expand, 1, bias=False), nn.BatchNorm2d(expand), act()]
        layers += [nn.Conv2d(expand, expand, k, s, k // 2, groups=expand, bias=False), nn.BatchNorm2d(expand), act()]
        if use_se:
            layers.append(SqueezeExcite(expand))
        layers += [nn.Conv2d(expand, c2, 1, bias=False), nn.BatchNorm2d(c2)]
        self.block = nn.Sequential(*layers)
        self.residual = s == 1 and c1 == c2

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y
