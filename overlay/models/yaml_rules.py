# How a model-YAML row becomes a module's constructor arguments, output channels and repeats. An overlay module
# names its rule next to its class (`yaml_rule = attention`), so parse_model needs no if-chain per class.
from dataclasses import dataclass

from utils.general import make_divisible


class ModelYAMLError(ValueError):
    """A model YAML layer that cannot be built; the message names the layer."""


@dataclass
class Row:
    # one backbone/head row of a model YAML, with what parse_model knows when it reaches it
    index: int
    name: str  # the module name as the YAML writes it
    source: object  # `from`: an int, or a list of ints for fusion layers
    repeats: int  # `number` after depth_multiple
    args: list
    channels: list  # output channels of every earlier layer (ch[-1] is the previous one)
    width: float  # width_multiple

    def error(self, message):
        return ModelYAMLError(f'layer {self.index} ({self.name}): {message}')

    @property
    def c_in(self):
        if isinstance(self.source, list):
            raise self.error(f'takes one input, but `from` lists {self.source}')
        return self.channels[self.source]

    def inputs(self, count):
        # channels of each input of a fusion layer, which must read `count` layers (an int, or a tuple of ints)
        counts = count if isinstance(count, tuple) else (count,)
        if not isinstance(self.source, list) or len(self.source) not in counts:
            raise self.error(f'needs {" or ".join(map(str, counts))} inputs in `from`, got {self.source}')
        return [self.channels[x] for x in self.source]

    def scaled(self, c2):
        return make_divisible(c2 * self.width, 8)  # as upstream scales Conv and C3 outputs


def _written_channels(args):
    # the leading int of an attention row is the channel count a post wrote; an option otherwise (SimAM [1e-4])
    return bool(args) and isinstance(args[0], int) and not isinstance(args[0], bool)


def attention(cls, row):
    """[channels, *options]: output = input; the channels written are ignored, the real input count is used."""
    options = row.args[1:] if _written_channels(row.args) else row.args
    return [row.c_in, *options], row.c_in, row.repeats


def parameter_free(cls, row):
    """[] (an activation): output = input, nothing to build it from."""
    return [], row.c_in, row.repeats


def c3_like(cls, row):
    """[c2, *options] as upstream's C3: c2 width-scaled, the depth repeats passed in as n."""
    c2 = row.scaled(row.args[0])
    return [row.c_in, c2, row.repeats, *row.args[1:]], c2, 1


def conv_like(cls, row):
    """[c2, *options] as upstream's Conv: c2 width-scaled (the posts' rule for their MobileNetV3 blocks)."""
    c2 = row.scaled(row.args[0])
    return [row.c_in, c2, *row.args[1:]], c2, row.repeats


def fixed_channels(cls, row):
    """[c2, *options]: the channels written are the paper's, not width-scaled."""
    return [row.c_in, *row.args], row.args[0], row.repeats


def concat_fusion(cls, row):
    """[dimension]: cls.n_inputs layers in `from`, concatenated, so the outputs add up."""
    return row.args, sum(row.inputs(cls.n_inputs)), row.repeats


def sum_fusion(cls, row):
    """[channels, ...]: cls.n_inputs same-shaped layers in `from`, summed; channels from the inputs."""
    channels = row.inputs(cls.n_inputs)
    if len(set(channels)) > 1:
        raise row.error(f'sums its inputs {row.source}, which need equal channels; they have {channels}')
    return [channels[0]], channels[0], row.repeats
