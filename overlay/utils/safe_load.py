# Load YOLOv5 checkpoints without letting them run code (see patches/series: compat-torch-load-weights-only)
#
# A YOLOv5 .pt pickles whole nn.Modules, so torch>=2.6's weights_only=True refuses it, and weights_only=False lets
# any downloaded file run code. torch's own safe unpickler is not enough either: it calls any allowed class with
# arguments the file chooses (a model class then evals a YAML string from the file), sets any state on numpy
# dtypes, and fills any object through SETITEM. Here the file is read by utils/safe_unpickler.py with a policy
# made from what real checkpoints hold (upstream's yolov5n.pt, what train.py, segment/ and classify/ save, v6-era
# names): model and layer classes rebuilt by __new__ and their saved state (no hooks), tensors and parameters
# over storages of the file, numpy numbers, containers, paths, classify's transforms, Segment's Detect.forward.
# Nothing is ever called but those rebuild functions, each checking its arguments. The archive itself must be
# what torch.save writes: a zip of stored records (no legacy format, no compression, no TorchScript code).
# YOLOV5_TRUST_CHECKPOINTS=1 opts out for files you trust.
import inspect
import logging
import math
import os
import zipfile
from collections import OrderedDict

import torch

from utils.safe_data import plain_data_policy
from utils.safe_unpickler import Policy, Refused, pickle_module, qualified_name

TRUST_ENV = 'YOLOV5_TRUST_CHECKPOINTS'
LOGGER = logging.getLogger('yolov5')
# Packages whose nn.Module classes a checkpoint may contain (imported ones only: what the model code uses)
MODULE_PACKAGES = ('models', 'torch.nn.modules', 'torchvision.models', 'torchvision.ops')
# Tensors may hold at most this many times the elements of the file's storages (+ slack): real checkpoints hold one
# tensor per storage; a view that repeats elements (stride 0) is materialized by .float() or fuse()
VIEW_BUDGET_FACTOR, VIEW_BUDGET_SLACK = 2, 1 << 24
# Storage element types of real checkpoints (no quantized ones: their rebuild skips torch's bounds checks)
STORAGE_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
                  torch.int32, torch.int64, torch.bool, torch.complex64, torch.complex128}


class UntrustedCheckpoint(Refused):
    """A checkpoint that needs something outside what YOLOv5 checkpoints are made of."""


def _never_pickled():
    # nn.Modules of models/ that load files, URLs or images when used: no checkpoint holds them
    from models.common import AutoShape, DetectMultiBackend
    from models.experimental import Ensemble
    return {AutoShape, DetectMultiBackend, Ensemble}


def module_classes():
    """{'module.name': class} of every nn.Module class reachable by name in MODULE_PACKAGES; aliases count too
    (models.yolo.Model = DetectionModel, as v6 checkpoints pickled it)."""
    import models.yolo  # noqa: F401  (imports models.common, models.experimental and the overlay's modules)
    try:
        import torchvision.models  # noqa: F401
        import torchvision.ops  # noqa: F401
    except ImportError:
        pass
    import sys
    never = _never_pickled()
    found = {}
    for name, module in list(sys.modules.items()):
        if module is None or not any(name == p or name.startswith(p + '.') for p in MODULE_PACKAGES):
            continue
        for attr, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, torch.nn.Module) and value is not torch.nn.Module \
                    and value not in never:
                found[f'{name}.{attr}'] = value
    return found


def transform_classes():
    # classify/train.py saves the model with its test transforms (model.transforms, classify_transforms()): a
    # torchvision Compose of utils/augmentations.py's CenterCrop and ToTensor and torchvision's Normalize
    try:
        import torchvision.transforms as T
    except ImportError:
        return {}
    from utils import augmentations
    classes = [T.Compose, T.Normalize, T.Resize, T.CenterCrop, T.ToTensor, augmentations.CenterCrop,
               augmentations.ToTensor, augmentations.LetterBox]
    return {f'{c.__module__}.{c.__qualname__}': c for c in classes}


def _state_dict(obj, state):
    if type(state) not in (dict, OrderedDict) or not all(type(k) is str for k in state):
        raise Refused(f'it gives {qualified_name(type(obj))} a state that is not a dict of names: {state!r:.60}')


def build_object(obj, state):
    _state_dict(obj, state)
    obj.__dict__.update(state)


MODULE_SLOTS = {'_parameters': (torch.nn.Parameter, type(None)), '_buffers': (torch.Tensor, type(None)),
                '_modules': (torch.nn.Module, type(None))}


def build_module(module, state):
    # nn.Module state as pickled: its dicts hold what their names say, and no hook (hooks run on every call)
    _state_dict(module, state)
    for key, value in state.items():
        if 'hook' in key and value:
            raise Refused(f'it gives {qualified_name(type(module))} {key} {value!r:.60} (hooks run code on each call)')
        kinds = MODULE_SLOTS.get(key)
        if kinds and (type(value) not in (dict, OrderedDict) or not all(isinstance(v, kinds) for v in value.values())):
            raise Refused(f'it gives {qualified_name(type(module))} {key} that are not {kinds[0].__name__}s')
    module.__setstate__(state)
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        _check_conv(module)


def _check_conv(conv):
    # fuse() rebuilds a conv from its saved numbers (channels, kernel_size, groups), not from its weight: they must
    # describe the weight the file holds, or 20000 x 20000 kernels cost 77 GB from a few bytes
    weight = conv._parameters.get('weight')
    try:
        channels = (conv.in_channels, conv.out_channels // conv.groups) if conv.transposed else \
            (conv.out_channels, conv.in_channels // conv.groups)
        expected = (*channels, *conv.kernel_size)
    except (AttributeError, TypeError, ZeroDivisionError):
        expected = None
    if weight is not None and tuple(weight.shape) != expected:
        raise Refused(f'it gives {qualified_name(type(conv))} a weight of shape {tuple(weight.shape)!r:.60} but '
                      f'in_channels, out_channels, groups and kernel_size that describe {expected!r:.60}')


class CheckpointPolicy(Policy):
    """What a YOLOv5 checkpoint may rebuild."""

    def __init__(self, records=None):
        base = plain_data_policy()
        self.records = records  # {'data/0': bytes, ...} of the archive: what each storage may declare
        super().__init__(base.globals, base.calls)
        self.modules = module_classes()
        transforms = transform_classes()
        self.classes = {cls: build_module for cls in self.modules.values()}
        self.classes.update({c: build_module if issubclass(c, torch.nn.Module) else build_object
                             for c in transforms.values()})
        self.globals.update(self.modules)
        self.globals.update(transforms)
        self.globals.update({'torch._utils._rebuild_tensor_v2': torch._utils._rebuild_tensor_v2,
                             'torch._utils._rebuild_parameter': torch._utils._rebuild_parameter,
                             'builtins.getattr': getattr})
        self.calls.update({torch._utils._rebuild_tensor_v2: self.rebuild_tensor,
                           torch._utils._rebuild_parameter: self.rebuild_parameter, getattr: self.method})
        try:  # torchvision's Resize pickles its mode as InterpolationMode(value): a lookup, no state
            from torchvision.transforms import InterpolationMode
            self.globals[f'{InterpolationMode.__module__}.InterpolationMode'] = InterpolationMode
            self.calls[InterpolationMode] = lambda value: InterpolationMode(str(value))
        except ImportError:
            pass
        self.storages, self.tensors = {}, {}  # id -> object: what this load rebuilt (kept alive, ids stable)
        self.storage_elements = self.view_elements = 0  # elements the file's storages hold; its tensors view

    def resolve(self, module, name):
        full = f'{module}.{name}'
        if full in self.globals:
            return self.globals[full]
        owner, _, attr = full.rpartition('.')  # protocol 4 names a method as 'models.yolo' 'Detect.forward'
        if owner in self.modules and attr == 'forward':
            return self.method(self.modules[owner], attr)
        raise Refused(f'it needs {full}')

    def method(self, owner, name):
        # Segment stores Detect.forward as an attribute, pickled as getattr(Detect, 'forward'): exactly that
        if owner not in self.classes or name != 'forward':
            raise Refused(f'it calls getattr({owner!r:.60}, {name!r:.40}) (only a model class\'s forward)')
        return getattr(owner, name)

    def persistent(self, pid, load):
        # ('storage', storage type, key, location, numel): the record data/<key> of the archive
        ok = type(pid) is tuple and len(pid) == 5
        if ok:
            kind, storage_type, key, location, numel = pid
            dtype = torch.uint8 if storage_type is torch.UntypedStorage else getattr(storage_type, 'dtype', None)
            ok = (kind in ('storage', b'storage') and dtype in STORAGE_DTYPES and type(key) is str
                  and type(location) in (str, bytes) and type(numel) is int and numel >= 0
                  and (storage_type is torch.UntypedStorage or type(storage_type).__name__ == 'StorageType'))
        if not ok:
            raise Refused(f'it references the storage {pid!r:.80} (plain tensor storages only)')
        declared, held = numel * torch._utils._element_size(dtype), (self.records or {}).get(f'data/{key}')
        if self.records is not None and declared != held:
            raise Refused(f'its storage data/{key} declares {declared} bytes, and the file holds {held}')
        storage = load(pid)  # torch checks the record's size against numel
        if id(storage) not in self.storages:
            self.storage_elements += storage._size()
        self.storages[id(storage)] = storage
        return storage

    def rebuild_tensor(self, storage, offset, size, stride, requires_grad, hooks, metadata=None):
        ints = lambda xs: type(xs) in (tuple, list) and all(type(x) is int and x >= 0 for x in xs)
        ok = (id(storage) in self.storages and type(offset) is int and offset >= 0 and ints(size) and ints(stride)
              and len(size) == len(stride) and type(requires_grad) is bool and _empty(hooks) and not metadata)
        if ok and all(size):  # the last element it reaches lies inside its storage
            ok = offset + sum((n - 1) * s for n, s in zip(size, stride)) < storage._size()
        if not ok:
            raise Refused(f'it rebuilds a tensor of size {size!r:.40}, stride {stride!r:.40}, offset {offset!r:.20} '
                          f'over {type(storage).__name__} (not a view inside a storage of the file, or with hooks)')
        self.view_elements += math.prod(size)
        if self.view_elements > VIEW_BUDGET_FACTOR * self.storage_elements + VIEW_BUDGET_SLACK:
            # stride-0 or overlapping views: 2 bytes of file that .float() or fuse() makes 17 GB
            raise Refused(f'its tensors hold {self.view_elements} elements over storages of {self.storage_elements} '
                          f'(views that repeat their elements, such as size {tuple(size)!r:.40} with stride '
                          f'{tuple(stride)!r:.40}, cost memory the file does not hold once used)')
        tensor = torch._utils._rebuild_tensor_v2(storage, offset, tuple(size), tuple(stride), requires_grad,
                                                 OrderedDict())
        self.tensors[id(tensor)] = tensor
        return tensor

    def rebuild_parameter(self, data, requires_grad, hooks):
        if id(data) not in self.tensors or type(requires_grad) is not bool or not _empty(hooks):
            raise Refused(f'it rebuilds a parameter from {type(data).__name__} with hooks {hooks!r:.40}')
        parameter = torch._utils._rebuild_parameter(data, requires_grad, OrderedDict())
        self.tensors[id(parameter)] = parameter
        return parameter


def _empty(hooks):
    return type(hooks) in (dict, OrderedDict) and not hooks


def _starts_as_zip(file):
    # torch reads a file as a zip only if it starts with a zip record; zipfile looks for the directory at the end,
    # so a legacy file with a zip appended passed zipfile's test and went to torch's legacy loader
    if hasattr(file, 'read'):
        start = file.read(4)
        file.seek(0)
    else:
        with open(file, 'rb') as f:
            start = f.read(4)
    return start == b'PK\x03\x04'


def check_archive(file):
    """Refuse what torch.save never writes before torch reads it: legacy (non-zip) files, compressed records, two
    records of one name, TorchScript code. Returns {record name below the archive folder: size in bytes}."""
    if not _starts_as_zip(file) or not zipfile.is_zipfile(file):
        raise Refused('it is not a zip archive (torch<1.6 wrote such legacy files; their loader allocates what the '
                      'file declares and was the route of CVE-2025-32434); re-save it where you trust it')
    with zipfile.ZipFile(file) as z:
        infos = z.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise Refused('it holds two records of the same name')
    if any(n.rsplit('/', 1)[-1] == 'constants.pkl' for n in names):
        raise Refused('it is a TorchScript archive: its code runs when it is used (export it as .torchscript and '
                      'load that with DetectMultiBackend only if you trust it)')
    packed = [i.filename for i in infos if i.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise Refused(f'its record {packed[0]} is compressed (torch.save stores records; a compressed one can expand '
                      f'without bound)')
    return {i.filename.split('/', 1)[-1]: i.file_size for i in infos}


def load_checkpoint(file, map_location='cpu'):
    # torch.load of a YOLOv5 checkpoint through the restricted unpickler and the YOLOv5 policy
    if os.environ.get(TRUST_ENV, '').lower() in ('1', 'true', 'yes'):
        LOGGER.warning(f'{TRUST_ENV} is set: loading {file} with full unpickling (for files you trust)')
        return torch.load(file, map_location=map_location, weights_only=False)
    try:
        records = check_archive(file)
        if hasattr(file, 'seek'):
            file.seek(0)
        return torch.load(file, map_location=map_location, weights_only=False,
                          pickle_module=pickle_module(CheckpointPolicy(records)))
    except Refused as e:
        raise UntrustedCheckpoint(
            f'refused to load {file}: {e}. No YOLOv5 checkpoint needs that, and loading it could run code or exhaust '
            f'memory. If you trust this file (you made it, or it comes from someone you trust), load it with '
            f'{TRUST_ENV}=1 in the environment.') from None
