# SE: squeeze-and-excitation (Hu et al., CVPR 2018), as the posts add it to YOLOv5 (YAML name SE)
import torch.nn as nn

from models.c3_attention import c3_family
from models.yaml_rules import attention


def check_reduction(channels, reduction, module):
    if reduction < 1 or channels // reduction < 1:
        raise ValueError(f'{module} reduction {reduction} leaves no hidden channels for {channels} input channels; '
                         f'valid reductions: 1..{channels}')


class SE(nn.Module):
    # s = sigmoid(W2 relu(W1 mean_hw(x))), output x * s; W1: C -> C/r, W2: C/r -> C, no biases (the paper's Eq. 3)
    yaml_names = ('SE', 'SEAttention')
    yaml_rule = attention  # YAML [channels, reduction=16]

    def __init__(self, channels, reduction=16):
        super().__init__()
        check_reduction(channels, reduction, 'SE')
        self.fc1 = nn.Linear(channels, channels // reduction, bias=False)
        self.fc2 = nn.Linear(channels // reduction, channels, bias=False)
        self.act = nn.ReLU(inplace=True)

    @staticmethod
    def check_args(channels, reduction=16):
        check_reduction(channels, reduction, 'SE')

    def forward(self, x):
        s = self.fc2(self.act(self.fc1(x.mean((2, 3)))))  # mean, not adaptive pooling: deterministic on CUDA
        return x * s.sigmoid()[..., None, None]


C3_SE, C3_SE1, C3_SE2, C3_SE3 = c3_family(SE, 'C3_SE', aliases=('C3SE',))
