# Pretrained weights into a model built from a different YAML: layers matched by architecture, not by index.
# Upstream's intersect_dicts pairs tensors by name, and the name holds the layer index: inserting one layer
# (an EMA after a C3) shifts every later index, so the head starts random or takes another layer's weights.
# Here the two layer graphs are aligned from the Detect head backwards along each layer's inputs; a layer may
# be inserted or dropped where it keeps its input's shape (attention blocks), and a layer gets weights only from
# the layer at its own place in the other graph. Within that pair, every tensor whose name (its role inside the
# layer: cv1.conv.weight) and shape agree moves: all of them for an unchanged layer; the C3 parts of a C3 with an
# attention inserted, or the unchanged parts of a C3 whose first convolutions read more channels, partially.
# The convolutions that read a layer's input keep their init when it reads its counterpart's features permuted.
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
    changed: list = field(default_factory=list)  # same type in the same place, no tensor of the same shape: init
    rewired: list = field(default_factory=list)  # same type and shapes, but reading other inputs: keep init
    partial: list = field(default_factory=list)  # (layer, what kept its init and why): the rest transferred
    structural: bool = True  # False: identical architectures, upstream's name-and-shape intersection

    def summary(self, total, source):
        text = f'Transferred {len(self.state)}/{total} items from {source}'
        if not self.structural:
            return text
        details = [f'{self.remapped} remapped by structure']
        if self.partial:
            details.append('partial: ' + ', '.join(f'{layer.index} {layer.type} ({why})' for layer, why in self.partial))
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


def shared_tensors(a, b):
    """Tensor names of a that b holds with the same shape: the same role inside the layer."""
    return [k for k, shape in a.items() if b.get(k) == shape]


def contains(a, b):
    """Does a hold every tensor of b, by name and shape? (a new type that keeps the old one's parts)"""
    return all(a.get(k) == shape for k, shape in b.items())


def input_readers(module, inputs):
    """Names of the tensors of the leaf modules that read the layer's input itself (C3: cv1.conv, cv2.conv)."""
    readers, hooks = set(), []
    for name, leaf in module.named_modules():
        if name and not any(True for _ in leaf.children()):
            hooks.append(leaf.register_forward_pre_hook(
                lambda mod, args, name=name: readers.add(name) if args and any(args[0] is x for x in inputs) else None))
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        with torch.no_grad():
            module(inputs[0] if len(inputs) == 1 else list(inputs))
    finally:
        for h in hooks:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return {f'{name}.{k}' for name in readers for k, _ in module.get_submodule(name).state_dict().items()}


def why_kept(keys, src_tensors, readers):
    """'attention new, cv1.conv other shape': what of a partially transferred layer kept its init, and why."""
    groups = {}
    for k in keys:
        why = 'reads permuted inputs' if k in readers else 'other shape' if k in src_tensors else 'new'
        groups.setdefault(why, []).append(k.rsplit('.', 1)[0])
    return ', '.join(f'{"/".join(dict.fromkeys(mods))} {why}' for why, mods in groups.items())


class Aligner:
    # Best correspondence of two layer graphs, from a pair of output layers back along their inputs
    def __init__(self, src, dst, src_image, dst_image, exclude):
        self.src, self.dst, self.exclude = src, dst, exclude
        self.src_image, self.dst_image = src_image, dst_image
        self.memo = {}

    def _shape(self, layers, image, i):
        return image if i == IMAGE else layers[i].shape

    def transparent(self, layers, image, i):
        # one input and the input's shape out, of a type the other model lacks: a block that can be inserted
        # (attention) without changing the rest; a C3 that keeps its shape is a layer both models have
        if i == IMAGE or len(layers[i].inputs) != 1:
            return False
        other = self.src if layers is self.dst else self.dst
        return layers[i].shape is not None and layers[i].shape == self._shape(layers, image, layers[i].inputs[0]) \
            and layers[i].type not in {layer.type for layer in other}

    def pair_points(self, d, s):
        # same type (or another type holding all of the other's tensors: C3_EMA1 holds a C3), then all tensors alike
        a, b = self.dst[d], self.src[s]
        ta, tb = kept(a.tensors, self.exclude), kept(b.tensors, self.exclude)
        if a.type != b.type:
            return SAME_TYPE if ta and tb and (contains(ta, tb) or contains(tb, ta)) else 0
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

    def wired_alike(self, d, s, memo=None, ordered=True):
        """Do the paired layers read the same things in the same order (ordered=False: in any order)? Each input must
        hand on what its counterpart does: a related layer with weights (the same type, or one holding its tensors:
        C3_EMA1 for C3) defines the feature at that place; a layer without weights (Concat, Upsample), or a
        concatenation of either kind (BiFPN_Concat for Concat), only moves features around, so its own inputs must be
        alike too (a Concat with swapped inputs permutes the next layer's channels)."""
        memo = {} if memo is None else memo
        if (d, s, ordered) not in memo:
            memo[(d, s, ordered)] = False
            a = [self._through_skipped(i, self.dst, self.skipped_dst, self.corr) for i in self.dst[d].inputs]
            paired_src = set(self.corr.values())
            b = [self._through_skipped(i, self.src, self.skipped_src, paired_src) for i in self.src[s].inputs]
            if ordered:
                alike = len(a) == len(b) and all(self.hands_on_alike(x, y, memo, ordered) for x, y in zip(a, b))
            else:  # each input alike one of the other's, one to one
                left = list(b)
                for x in a:
                    y = next((y for y in left if self.hands_on_alike(x, y, memo, ordered)), None)
                    left.remove(y) if y is not None else None
                alike = len(a) == len(b) and not left
            memo[(d, s, ordered)] = alike
        return memo[(d, s, ordered)]

    def hands_on_alike(self, x, y, memo, ordered=True):
        if x == IMAGE or y == IMAGE:
            return x == y
        if self.corr.get(x) != y:
            return False
        if self.pair_points(x, y) and (self.dst[x].tensors or self.src[y].tensors):
            return True
        weightless = self.pair_points(x, y) or (concatenates(self.dst, self.dst_image, x) and
                                                concatenates(self.src, self.src_image, y))
        return bool(weightless) and self.wired_alike(x, y, memo, ordered)

    def permuted(self, d, s):
        """The same features as the counterpart reads, in another order: the convolutions that read them would
        apply their weights to permuted channels."""
        return not self.wired_alike(d, s) and self.wired_alike(d, s, ordered=False)


def concatenates(layers, image, i):
    # several inputs, and as many output channels as they have together, at their size: a concatenation
    inputs = [image if j == IMAGE else layers[j].shape for j in layers[i].inputs]
    out = layers[i].shape
    return len(inputs) > 1 and out is not None and None not in inputs and \
        out[0] == sum(x[0] for x in inputs) and all(x[1:] == out[1:] for x in inputs)


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
        tensors = kept(layer.tensors, exclude)
        shared = shared_tensors(tensors, kept(src[s].tensors, exclude)) if points else []
        readers = set() if not shared or not aligner.permuted(layer.index, s) else input_readers(
            model.model[layer.index], [torch.zeros(1, *(dst_image if i == IMAGE else dst[i].shape)) for i in layer.inputs])
        moved = [k for k in shared if k not in readers]
        if not moved:  # inserted, in place of a layer of another type, same type but no tensor alike, or rewired
            (out.rewired if shared else out.changed if points else out.new).append(layer)
            continue
        out.pairs[layer.index] = s
        for k in moved:
            out.state[f'model.{layer.index}.{k}'] = csd[f'model.{s}.{k}']
        out.remapped += len(moved) * (layer.index != s)
        if len(moved) < len(tensors):
            left = [k for k in tensors if k not in moved]
            out.partial.append((layer, why_kept(left, src[s].tensors, readers)))
    return out


TRANSFERS = ('structure', 'name')  # train.py --transfer: ours, or upstream's intersect_dicts (to compare the two)


def transfer_by_name(src_model, model, exclude=()):
    """Upstream v7.0's transfer: every tensor whose name (which holds the layer index) and shape agree."""
    state = intersect_dicts(src_model.float().state_dict(), model.state_dict(), exclude=exclude)
    return Transfer(state, {}, structural=False)


def load_pretrained(ckpt_model, model, source, exclude=(), resume=False, method='structure'):
    """train.py's --weights X.pt: load what transfers into `model`, log what happened, return the loaded state.
    On --resume the training state kept on the model (loss_state: WIoU's running mean) comes along too."""
    if method not in TRANSFERS:
        raise ValueError(f'--transfer {method!r} is not one of {", ".join(TRANSFERS)}')
    t = (transfer_weights if method == 'structure' else transfer_by_name)(ckpt_model, model, exclude)
    model.load_state_dict(t.state, strict=False)
    if resume and getattr(ckpt_model, 'loss_state', None):
        model.loss_state = dict(ckpt_model.loss_state)
    LOGGER.info(t.summary(len(model.state_dict()), source))
    return t.state
