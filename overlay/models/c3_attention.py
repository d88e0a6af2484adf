# C3 blocks holding an attention module (EMA, SE, CBAM, CA, ECA, SimAM): where it sits is the block's placement
import torch
import torch.nn as nn

from models.common import C3, Bottleneck
from models.yaml_rules import c3_like


class AttentionBottleneck(Bottleneck):
    # upstream's Bottleneck with an attention module on its branch, before the residual add (the posts' C3_CBAM,
    # C3_CA, C3_ECA: CBAMBottleneck, CABottleneck, ECABottleneck)
    def __init__(self, c1, c2, attention, shortcut=True, g=1, e=0.5):
        super().__init__(c1, c2, shortcut, g, e)
        self.attention = attention

    def forward(self, x):
        y = self.attention(self.cv2(self.cv1(x)))
        return x + y if self.add else y


class C3WithAttention(C3):
    # C3 with one attention module: placement 1 after cv1 (bottleneck branch), 2 on the input of cv2, 3 on the
    # concatenation before cv3, or 'bottleneck' inside every bottleneck. YAML [c2, shortcut, g, e, *options]
    attention_class = None
    attention_attr = 'attention'
    placement = 3
    yaml_rule = c3_like

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5, *options):
        in_bottlenecks = self.placement == 'bottleneck'
        super().__init__(c1, c2, 0 if in_bottlenecks else n, shortcut, g, e)
        c = self.attention_channels(c1, c2, e)
        if in_bottlenecks:
            self.m = nn.Sequential(*(AttentionBottleneck(c, c, self.attention_class(c, *options), shortcut, g, e=1.0)
                                     for _ in range(n)))
        else:
            setattr(self, self.attention_attr, self.attention_class(c, *options))

    @classmethod
    def attention_channels(cls, c1, c2, e=0.5):
        return {1: int(c2 * e), 2: c1, 3: 2 * int(c2 * e), 'bottleneck': int(c2 * e)}[cls.placement]

    @classmethod
    def check_args(cls, c1, c2, n=1, shortcut=True, g=1, e=0.5, *options):
        check = getattr(cls.attention_class, 'check_args', None)
        if check is not None:
            check(cls.attention_channels(c1, c2, e), *options)

    def forward(self, x):
        if self.placement == 'bottleneck':
            return super().forward(x)
        attention = getattr(self, self.attention_attr)
        if self.placement == 1:
            return self.cv3(torch.cat((self.m(attention(self.cv1(x))), self.cv2(x)), 1))
        if self.placement == 2:
            return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(attention(x))), 1))
        return self.cv3(attention(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1)))


def c3_family(attention, name, aliases=()):
    """C3 classes for an attention module, to assign at module level of its file (checkpoints pickle them by
    name): `name` (and aliases) with attention in every bottleneck, as the posts build C3_CBAM; name1/2/3 with
    it at placement 1/2/3, as seed 004's C3_EMA1/2/3."""
    def make(suffix, placement, names):
        qualname = f'{name}{suffix}'
        return type(qualname, (C3WithAttention,), {
            '__module__': attention.__module__, '__qualname__': qualname, 'attention_class': attention,
            'placement': placement, 'yaml_names': names,
            '__doc__': f'C3 with {attention.__name__} ' + (f'at placement {placement}' if suffix else
                                                             'in every bottleneck, before its residual add')})
    return (make('', 'bottleneck', (name, *aliases)), *(make(str(p), p, (f'{name}{p}',)) for p in (1, 2, 3)))
