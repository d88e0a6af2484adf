# MobileNetV3 blocks under the names and semantics of the "YOLOv5 改进" posts (conv_bn_hswish, MobileNetV3 /
# MobileNet_Block, SELayer, h_swish, h_sigmoid), so that a pasted post YAML builds the post's network: outputs
# width-scaled like Conv and C3, SE with biased linear layers (C -> C/4), placed where the posts' code puts it.
# Built from upstream's Conv, so Model.fuse() folds their BatchNorms. mobilenetv3.py keeps the paper's form.
import torch.nn as nn

from models.common import Conv
from models.mobilenetv3 import Conv_BN_HSwish
from models.squeeze_excitation import check_reduction
from models.yaml_rules import attention, conv_like, parameter_free


class ConvBNHSwishScaled(Conv_BN_HSwish):
    # the posts' conv_bn_hswish: Conv_BN_HSwish with its output width-scaled; YAML [out, stride]
    yaml_names = ('conv_bn_hswish',)
    yaml_rule = conv_like


class SELayer(nn.Module):
    # the posts' MobileNetV3 squeeze-and-excitation: Linear C -> C/4 (bias), ReLU, Linear C/4 -> C (bias), h-sigmoid
    yaml_names = ('SELayer',)
    yaml_rule = attention  # YAML [channels, reduction=4]

    def __init__(self, channels, reduction=4):
        super().__init__()
        self.check_args(channels, reduction)
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels), nn.Hardsigmoid())

    @staticmethod
    def check_args(channels, reduction=4):
        check_reduction(channels, reduction, 'SELayer')

    def forward(self, x):
        return x * self.fc(x.mean((2, 3)))[..., None, None]


class InvertedResidualPosts(nn.Module):
    # the posts' MobileNetV3 block. Without expansion: dw conv-BN-act, SE, 1x1 projection; with it: 1x1 conv-BN-act,
    # dw conv-BN, SE, act, 1x1 projection (SE before the activation, as their code has it). YAML [out, hidden,
    # kernel, stride, SE, hard-swish], out width-scaled
    yaml_names = ('MobileNetV3', 'MobileNet_Block', 'mobilev3_bneck', 'MobileNetV3_InvertedResidual')
    yaml_rule = conv_like

    def __init__(self, c1, c2, hidden, k, s, use_se, use_hs):
        super().__init__()
        act = nn.Hardswish if use_hs else nn.ReLU
        se = [SELayer(hidden)] if use_se else []
        if c1 == hidden:
            layers = [Conv(hidden, hidden, k, s, g=hidden, act=act()), *se]
        else:
            layers = [Conv(c1, hidden, 1, act=act()), Conv(hidden, hidden, k, s, g=hidden, act=False), *se, act()]
        self.conv = nn.Sequential(*layers, Conv(hidden, c2, 1, act=False))
        self.identity = s == 1 and c1 == c2

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.identity else y


class HSwish(nn.Hardswish):
    # the posts' h_swish, x * relu6(x + 3) / 6, should a YAML use it as a layer
    yaml_names = ('h_swish',)
    yaml_rule = parameter_free


class HSigmoid(nn.Hardsigmoid):
    # the posts' h_sigmoid, relu6(x + 3) / 6, should a YAML use it as a layer
    yaml_names = ('h_sigmoid',)
    yaml_rule = parameter_free
