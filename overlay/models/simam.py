# SimAM: parameter-free attention from an energy function (Yang et al., ICML 2021), as the posts add it (SimAM)
import torch.nn as nn

from models.c3_attention import c3_family
from models.yaml_rules import attention


class SimAM(nn.Module):
    # e_t^-1 = (t - mu)^2 / (4 (sigma^2 + lambda)) + 1/2 per pixel, sigma^2 over the other h*w - 1 pixels of its
    # channel; output x * sigmoid(1 / e) (the paper's Eqs. 5-6 and its code). No parameters
    yaml_names = ('SimAM', 'SimAM_module')
    yaml_rule = attention  # YAML [channels, e_lambda=1e-4]

    def __init__(self, channels=None, e_lambda=1e-4):
        super().__init__()
        self.check_args(channels, e_lambda)
        self.e_lambda = e_lambda

    @staticmethod
    def check_args(channels=None, e_lambda=1e-4):
        if not e_lambda > 0:
            raise ValueError(f'SimAM e_lambda {e_lambda} must be positive (the paper uses 1e-4)')

    def forward(self, x):
        n = max(x.shape[2] * x.shape[3] - 1, 1)  # a 1x1 map has no other pixels: avoid 0/0
        d = (x - x.mean((2, 3), keepdim=True)).square()
        return x * (d / (4 * (d.sum((2, 3), keepdim=True) / n + self.e_lambda)) + 0.5).sigmoid()

    def extra_repr(self):
        return f'e_lambda={self.e_lambda}'


C3_SimAM, C3_SimAM1, C3_SimAM2, C3_SimAM3 = c3_family(SimAM, 'C3_SimAM', aliases=('C3SimAM',))
