# Pretrained weights into a model built from a different YAML: layers matched by architecture, not by index.
# Upstream's intersect_dicts pairs tensors by name, and the name holds the layer index: inserting one layer
# (an EMA after a C3) shifts every later index, so the head starts random or takes another layer's weights.
# Here the two layer graphs are aligned from the Detect head backwards along each layer's inputs; a layer may
# be inserted or dropped where it keeps its input's shape (attention blocks), and a layer gets weights only from
# the layer at its own place in the other graph, when type and every tensor shape agree (all or nothing).
from collections import defaultdict
from dataclasses import dataclass, field

import torch

from utils.general import LOGGER, intersect_dicts

IMAGE = -1  # the input image, as a layer index
SAME_TYPE, SAME_TENSORS = 1, 2  # alignment score of a pair: structure first, then weights


@dataclass
class Layer:
    index: int
    type: str
    inputs: tuple  # absolute indices of the layers it reads, IMAGE for the input image
    tensors: dict  # state-dict key inside the layer -> shape
    shape: tuple = None  # output (C, H, W) on a probe image; None for a multi-output layer (Detect)


@dataclass
class Transfer:
    state: dict  # new model's state-dict keys -> checkpoint tensors
    pairs: dict  # new layer index -> checkpoint layer index, for every transferred layer
    remapped: int = 0  # transferred tensors whose name (layer index) differs from the checkpoint's
    new: list = field(default_factory=list)  # inserted, or replacing a layer of another type: keep their init
    changed: list = field(default_factory=list)  # same type in the same place, other tensor shapes: keep init
    rewired: list = field(default_factory=list)  # same type and shapes, but reading other inputs: keep init
    structural: bool = True  # False: identical architectures, upstream's name-and-shape intersection

    def summary(self, total, source):
        text = f'Transferred {len(self.state)}/{total} items from {source}'
        if not self.structural:
            return text
        details = [f'{self.remapped} remapped by structure']
        for label, layers in (('new', self.new), ('changed', self.changed), ('rewired', self.rewired)):
            if layers:
                details.append(f'{label}: ' + ', '.join(f'{layer.index} {layer.type}' for layer in layers))
        return f'{text} ({"; ".join(details)})'


def layer_inputs(i, f):
    # YOLOv5's `from`: -1 the previous layer, other negatives count back from layer i, the rest are absolute
    return tuple(i + j if j < 0 else j for j in ([f] if isinstance(f, int) else f))


def describe(model):
    """The layers of a YOLOv5 DetectionModel/SegmentationModel: type, inputs and tensors (shapes: add_shapes)."""
    tensors = defaultdict(dict)
    for key, value in model.state_dict().items():
        _, i, rest = key.split('.', 2)  # model.<i>.<rest>
        tensors[int(i)][rest] = tuple(value.shape)
    return [Layer(m.i, type(m).__name__, layer_inputs(m.i, m.f), tensors[m.i]) for m in model.model]


def add_shapes(model, layers):
    # Each layer's output shape; returns the probe image's (C, H, W)
    shapes, image = probe_shapes(model)
    for layer in layers:
        layer.shape = shapes.get(layer.index)
    return image


def probe_shapes(model):
    # Output shape of every layer on a small image (no gradients, eval mode, training flags restored)
    p = next(model.parameters())
    ch = model.yaml.get('ch', 3) if isinstance(getattr(model, 'yaml', None), dict) else 3
    size = 2 * int(max(model.stride)) if hasattr(model, 'stride') else 64
    image = torch.zeros(1, ch, size, size, device=p.device, dtype=p.dtype)
    shapes, modes = {}, {m: m.training for m in model.modules()}
    hooks = [m.register_forward_hook(lambda mod, _, out: shapes.__setitem__(mod.i, tuple(out.shape[1:])) if
                                     isinstance(out, torch.Tensor) else None) for m in model.model]
    try:
        model.eval()
        with torch.no_grad():
            model(image)
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return shapes, (ch, size, size)


def same_architecture(src, dst):
    # Same layers in the same order reading the same inputs: upstream's transfer by name is right
    return len(src) == len(dst) and all(a.type == b.type and a.inputs == b.inputs for a, b in zip(src, dst))


def kept(tensors, exclude):
    return {k: v for k, v in tensors.items() if not any(x in k for x in exclude)}


class Aligner:
    # Best correspondence of two layer graphs, from a pair of output layers back along their inputs
    def __init__(self, src, dst, src_image, dst_image, exclude):
        self.src, self.dst, self.exclude = src, dst, exclude
        self.src_image, self.dst_image = src_image, dst_image
        self.memo = {}

    def _shape(self, layers, image, i):
        return image if i == IMAGE else layers[i].shape

    def transparent(self, layers, image, i):
        # one input and the input's shape out: a block that can be inserted (attention) without changing the rest
        if i == IMAGE or len(layers[i].inputs) != 1:
            return False
        return layers[i].shape is not None and layers[i].shape == self._shape(layers, image, layers[i].inputs[0])

    def pair_points(self, d, s):
        a, b = self.dst[d], self.src[s]
        if a.type != b.type:
            return 0
        ta, tb = kept(a.tensors, self.exclude), kept(b.tensors, self.exclude)
        return SAME_TYPE + (SAME_TENSORS if ta and ta == tb else 0)

    def best(self, d, s):
        """(score, choice) for aligning dst layer d with src layer s; choice: 'pair', 'skip-dst', 'skip-src'."""
        if d == IMAGE or s == IMAGE:
            return 0, None
        if (d, s) not in self.memo:
            self.memo[(d, s)] = (-1, None)  # guards against cycles (none in a YOLOv5 graph)
            options = [(self.pair_points(d, s) + self.inputs(d, s)[0], 'pair')]
            if self.transparent(self.dst, self.dst_image, d):  # inserted in the new model
                options.append((self.best(self.dst[d].inputs[0], s)[0], 'skip-dst'))
            if self.transparent(self.src, self.src_image, s):  # dropped from the checkpoint's model
                options.append((self.best(d, self.src[s].inputs[0])[0], 'skip-src'))
            self.memo[(d, s)] = max(options, key=lambda o: o[0])  # first wins ties: pair, then skips
        return self.memo[(d, s)]

    def inputs(self, d, s):
        """Order-preserving alignment of the two layers' input lists: (score, [(d_in, s_in), ...])."""
        a, b = self.dst[d].inputs, self.src[s].inputs
        table = [[(0, [])] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                score, pairs = table[i - 1][j - 1]
                take = (score + self.best(a[i - 1], b[j - 1])[0], pairs + [(a[i - 1], b[j - 1])])
                table[i][j] = max((take, table[i - 1][j], table[i][j - 1]), key=lambda o: o[0])
        return table[-1][-1]

    def correspondence(self):
        """{dst layer: src layer} for layers that correspond unambiguously (reached by one pairing only); also
        notes the transparent layers passed over on either side."""
        found, seen, stack = defaultdict(set), set(), [(len(self.dst) - 1, len(self.src) - 1)]
        self.skipped_dst, self.skipped_src = set(), set()
        while stack:
            d, s = stack.pop()
            if d == IMAGE or s == IMAGE or (d, s) in seen:
                continue
            seen.add((d, s))
            choice = self.best(d, s)[1]
            if choice == 'pair':
                found[d].add(s)
                stack.extend(self.inputs(d, s)[1])
            elif choice == 'skip-dst':
                self.skipped_dst.add(d)
                stack.append((self.dst[d].inputs[0], s))
            else:
                self.skipped_src.add(s)
                stack.append((d, self.src[s].inputs[0]))
        self.corr = {}
        for d, candidates in found.items():
            if len(candidates) > 1:  # reached by differently shifted alignments: the same layer (type, tensors) wins
                points = {s: self.pair_points(d, s) for s in candidates}
                best = max(points.values())
                candidates = {s for s in candidates if points[s] == best} if best else candidates
            if len(candidates) == 1:
                self.corr[d] = next(iter(candidates))
        claimed = defaultdict(list)
        for d, s in self.corr.items():
            claimed[s].append(d)
        for s, ds in claimed.items():  # one checkpoint layer feeds one new layer, or none
            if len(ds) > 1:
                for d in ds:
                    del self.corr[d]
        return self.corr

    def _through_skipped(self, i, layers, skipped, paired):
        while i != IMAGE and i in skipped and i not in paired:
            i = layers[i].inputs[0]
        return i

    def wired_alike(self, d, s, memo=None):
        """Do the paired layers read the same things in the same order? Inputs must be paired with each other, and
        through layers without weights (Concat, Upsample) so must theirs: a layer with weights defines a feature,
        one without only moves features around (a Concat with swapped inputs permutes the next layer's channels)."""
        memo = {} if memo is None else memo
        if (d, s) not in memo:
            memo[(d, s)] = False
            a = [self._through_skipped(i, self.dst, self.skipped_dst, self.corr) for i in self.dst[d].inputs]
            paired_src = set(self.corr.values())
            b = [self._through_skipped(i, self.src, self.skipped_src, paired_src) for i in self.src[s].inputs]
            memo[(d, s)] = len(a) == len(b) and all(
                (x == IMAGE and y == IMAGE) or (x != IMAGE and self.corr.get(x) == y and (
                    self.dst[x].tensors or self.src[y].tensors or self.wired_alike(x, y, memo))) for x, y in zip(a, b))
        return memo[(d, s)]


def transfer_weights(src_model, model, exclude=()):
    """Checkpoint model's weights for `model`: a Transfer (state to load, what moved where, what stayed)."""
    csd, msd = src_model.float().state_dict(), model.state_dict()
    src, dst = describe(src_model), describe(model)
    if same_architecture(src, dst):
        return Transfer(intersect_dicts(csd, msd, exclude=exclude), {layer.index: layer.index for layer in dst},
                        structural=False)
    src_image, dst_image = add_shapes(src_model, src), add_shapes(model, dst)
    aligner = Aligner(src, dst, src_image, dst_image, exclude)
    corr = aligner.correspondence()
    out = Transfer({}, {})
    for layer in dst:
        if not layer.tensors:
            continue
        s = corr.get(layer.index)
        points = aligner.pair_points(layer.index, s) if s is not None else 0
        if points == SAME_TYPE + SAME_TENSORS and aligner.wired_alike(layer.index, s):
            out.pairs[layer.index] = s
            for k in kept(layer.tensors, exclude):
                out.state[f'model.{layer.index}.{k}'] = csd[f'model.{s}.{k}']
            out.remapped += len(kept(layer.tensors, exclude)) * (layer.index != s)
        elif points == SAME_TYPE + SAME_TENSORS:  # same layer, other inputs: its weights would see other features
            out.rewired.append(layer)
        else:  # inserted, or in place of a layer of another type, or same type with other shapes
            (out.changed if points else out.new).append(layer)
    return out


def load_pretrained(ckpt_model, model, source, exclude=(), resume=False):
    """train.py's --weights X.pt: load what transfers into `model`, log what happened, return the loaded state.
    On --resume the training state kept on the model (loss_state: WIoU's running mean) comes along too."""
    t = transfer_weights(ckpt_model, model, exclude)
    model.load_state_dict(t.state, strict=False)
    if resume and getattr(ckpt_model, 'loss_state', None):
        model.loss_state = dict(ckpt_model.loss_state)
    LOGGER.info(t.summary(len(model.state_dict()), source))
    return t.state
