# ECA: efficient channel attention (Wang et al., CVPR 2020), as the posts add it (YAML ECA, C3_ECA)
import math

import torch.nn as nn

from models.c3_attention import c3_family
from models.yaml_rules import attention


def adaptive_kernel_size(channels, gamma=2, b=1):
    # the paper's k = psi(C) = |log2(C) / gamma + b / gamma|, to the nearest odd number above
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    # y = x * sigmoid(conv1d_k(mean_hw(x))) across channels, no bias (the paper's Eq. 7). k_size 3 as the posts and
    # the official code; k_size None picks the paper's adaptive k = psi(C)
    yaml_names = ('ECA', 'ECAAttention', 'eca_layer')
    yaml_rule = attention  # YAML [channels, k_size=3]

    def __init__(self, channels, k_size=3):
        super().__init__()
        k = adaptive_kernel_size(channels) if k_size is None else k_size
        self.check_args(channels, k)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    @staticmethod
    def check_args(channels, k_size=3):
        if k_size is not None and (k_size < 1 or k_size % 2 == 0):
            raise ValueError(f'ECA k_size {k_size} must be odd and positive, or None for the paper\'s adaptive '
                             f'size ({adaptive_kernel_size(channels)} for {channels} channels)')

    def forward(self, x):
        y = self.conv(x.mean((2, 3))[:, None, :])  # (b, 1, c): channels as a sequence
        return x * y.sigmoid()[:, 0, :, None, None]


C3_ECA, C3_ECA1, C3_ECA2, C3_ECA3 = c3_family(ECA, 'C3_ECA', aliases=('C3ECA',))
