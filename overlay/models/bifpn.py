# BiFPN fusion nodes (Tan et al., EfficientDet, CVPR 2020): learnable fast normalised weights, then concatenation
import torch
import torch.nn as nn


class BiFPN_Concat(nn.Module):
    # w_i = relu(w_i) / (sum_j relu(w_j) + eps); output = concat(w_i * x_i): "fast normalized fusion"
    n_inputs = None  # fixed by the subclasses below, as the posts' YAML names say

    def __init__(self, dimension=1, eps=1e-4):
        super().__init__()
        self.d = dimension
        self.eps = eps
        self.w = nn.Parameter(torch.ones(self.n_inputs))

    def fusion_weights(self):
        w = torch.relu(self.w)
        return w / (w.sum() + self.eps)

    def forward(self, x):
        w = self.fusion_weights()
        return torch.cat([w[i] * xi for i, xi in enumerate(x)], self.d)


class BiFPN_Concat2(BiFPN_Concat):
    # weighted fusion of two feature maps
    n_inputs = 2


class BiFPN_Concat3(BiFPN_Concat):
    # weighted fusion of three feature maps (bottom-up node with the same-level backbone skip)
    n_inputs = 3
