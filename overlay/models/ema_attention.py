# EMA: Efficient Multi-Scale Attention with cross-spatial learning (Ouyang et al., ICASSP 2023), and C3 blocks with it
import torch
import torch.nn as nn

from models.c3_attention import C3WithAttention
from models.ema_autograd import EMAFunction, ema_forward
from models import ema_compiled
from models.yaml_rules import attention


def check_groups(channels, factor=8):
    if factor < 1 or channels % factor:
        divisors = [d for d in range(1, min(channels, 64) + 1) if channels % d == 0]
        raise ValueError(f'EMA needs its {channels} input channels divisible by factor {factor}; '
                         f'valid factors for {channels} channels: {divisors}')


class EMA(nn.Module):
    # Efficient Multi-Scale Attention: channels split into `factor` groups, 1x1 (directional pooling) and
    # 3x3 branches, each branch's global context re-weighting the other's pixels (cross-spatial learning)
    yaml_names = ('EMA',)
    yaml_rule = attention  # YAML [channels, factor=8]
    check_args = staticmethod(check_groups)

    def __init__(self, channels, factor=8):
        super().__init__()
        check_groups(channels, factor)
        self.groups = factor
        cg = channels // factor
        self.gn = nn.GroupNorm(cg, cg)  # one group per channel: per-channel normalisation over (h, w)
        self.conv1x1 = nn.Conv2d(cg, cg, 1)
        self.conv3x3 = nn.Conv2d(cg, cg, 3, padding=1)

    def forward(self, x):
        if self.hand_written_backward(x):
            params = (self.conv1x1.weight, self.conv1x1.bias, self.conv3x3.weight, self.conv3x3.bias, self.gn.weight,
                      self.gn.bias)
            return EMAFunction.apply(x, self, *params)
        if ema_compiled.wanted(x):
            return ema_compiled.ema_forward_compiled(x, self)  # CUDA training: fused kernels
        return ema_forward(x, self)[0]  # autograd's: inference, export, and wherever compiling is off

    def hand_written_backward(self, x):
        # the hand-written backward: CPU training in full precision, where it was measured (see README);
        # GPU (compiled, ema_compiled.py), autocast and tracing don't use it
        return (x.device.type == 'cpu' and torch.is_grad_enabled() and x.dtype in (torch.float32, torch.float64) and
                not torch.is_autocast_enabled(x.device.type) and not torch.jit.is_tracing() and
                (x.requires_grad or any(p.requires_grad for p in self.parameters())))


class C3WithEMA(C3WithAttention):
    # C3 holding one EMA module, kept as `ema`; subclasses say where it sits (seed 004's three placements)
    attention_class = EMA
    attention_attr = 'ema'


class C3_EMA1(C3WithEMA):
    # C3 with EMA on the bottleneck branch, after cv1 (seed 004, placement 1)
    yaml_names = ('C3_EMA1',)
    placement = 1


class C3_EMA2(C3WithEMA):
    # C3 with EMA on the input of the cv2 (shortcut) branch (seed 004, placement 2)
    yaml_names = ('C3_EMA2',)
    placement = 2


class C3_EMA3(C3WithEMA):
    # C3 with EMA on the concatenation, before cv3 (seed 004, placement 3)
    yaml_names = ('C3_EMA3',)
    placement = 3
