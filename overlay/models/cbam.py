# CBAM: convolutional block attention module (Woo et al., ECCV 2018), as the posts add it (YAML CBAM, C3_CBAM)
import torch
import torch.nn as nn

from models.c3_attention import c3_family
from models.squeeze_excitation import check_reduction
from models.yaml_rules import attention


class CBAM(nn.Module):
    # channel attention Mc = sigmoid(MLP(avg) + MLP(max)) with a shared MLP (C -> C/r -> C), then spatial attention
    # Ms = sigmoid(conv_kxk([mean_c; max_c])) on the channel-refined map (the paper's Eqs. 1-3, sequential order)
    yaml_names = ('CBAM', 'CBAMBlock')
    yaml_rule = attention  # YAML [channels, reduction=16, kernel_size=7]

    def __init__(self, channels, reduction=16, kernel_size=7):
        super().__init__()
        self.check_args(channels, reduction, kernel_size)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    @staticmethod
    def check_args(channels, reduction=16, kernel_size=7):
        check_reduction(channels, reduction, 'CBAM')
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'CBAM spatial kernel_size {kernel_size} must be odd and positive (the paper uses 7)')

    def mlp(self, x):
        return self.fc2(self.act(self.fc1(x)))

    def forward(self, x):
        x = x * (self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))).sigmoid()
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * self.spatial(pooled).sigmoid()


C3_CBAM, C3_CBAM1, C3_CBAM2, C3_CBAM3 = c3_family(CBAM, 'C3_CBAM', aliases=('C3CBAM', 'CBAMC3'))
