# The overlay's model-YAML modules: their names, and how parse_model turns their YAML args into constructor args
from models.bifpn import BiFPN_Concat, BiFPN_Concat2, BiFPN_Concat3
from models.ema_attention import EMA, C3_EMA1, C3_EMA2, C3_EMA3
from models.mobilenetv3 import Conv_BN_HSwish, MobileNetV3_Block
from utils.general import make_divisible

OVERLAY_MODULES = {m.__name__: m for m in (EMA, C3_EMA1, C3_EMA2, C3_EMA3, BiFPN_Concat2, BiFPN_Concat3,
                                            Conv_BN_HSwish, MobileNetV3_Block)}
C3_EMA_BLOCKS = (C3_EMA1, C3_EMA2, C3_EMA3)


class ModelYAMLError(ValueError):
    """A model YAML layer that cannot be built; the message names the layer."""


def _check_groups(i, name, channels, factor):
    if factor < 1 or channels % factor:
        divisors = [d for d in range(1, min(channels, 64) + 1) if channels % d == 0]
        raise ModelYAMLError(f'layer {i} ({name}): EMA needs its {channels} input channels divisible by factor '
                             f'{factor}; valid factors for {channels} channels: {divisors}')


def overlay_args(m, args, ch, f, n, gw, i):
    """(constructor args, output channels, repeats) for overlay module m at layer i of a model YAML."""
    name = m.__name__
    if m is EMA:  # YAML [channels, factor]: the channels written are ignored, the real input count is used
        c1, factor = ch[f], (args[1] if len(args) > 1 else 8)
        _check_groups(i, name, c1, factor)
        return [c1, factor], c1, n
    if m in C3_EMA_BLOCKS:  # YAML [c2, shortcut, ...] as C3; width-scaled, depth repeats folded in
        c1, c2 = ch[f], make_divisible(args[0] * gw, 8)
        args = [c1, c2, n, *args[1:]]
        factor = args[6] if len(args) > 6 else 8
        _check_groups(i, name, m.attention_channels(c1, c2, args[5] if len(args) > 5 else 0.5), factor)
        return args, c2, 1
    if issubclass(m, BiFPN_Concat):  # YAML [dimension], `from` lists the inputs
        if not isinstance(f, list) or len(f) != m.n_inputs:
            raise ModelYAMLError(f'layer {i} ({name}): needs {m.n_inputs} inputs in `from`, got {f}')
        return args, sum(ch[x] for x in f), n
    if m in (Conv_BN_HSwish, MobileNetV3_Block):  # YAML [c2, ...]: the paper's channels, not width-scaled
        return [ch[f], *args], args[0], n
    raise ModelYAMLError(f'layer {i}: {name} is not an overlay module')
