# Load YOLOv5 checkpoints without letting them run code (see patches/series: compat-torch-load-weights-only)
#
# A YOLOv5 .pt pickles whole nn.Modules, so torch>=2.6's weights_only=True refuses it, and weights_only=False
# lets any downloaded file run arbitrary code on load. Here torch's safe unpickler gets an allowlist of exactly
# the classes YOLOv5 checkpoints are made of: the model classes of models/ (upstream's and the overlay's),
# torch.nn layers, torchvision's classification models (classify/train.py --model resnet18) and numpy arrays
# (best_fitness), classify's preprocessing and pathlib paths. Anything else is refused with its name;
# YOLOV5_TRUST_CHECKPOINTS=1 opts out for trusted files.
import inspect
import logging
import os
import pickle
import re
import sys

import torch

TRUST_ENV = 'YOLOV5_TRUST_CHECKPOINTS'
LOGGER = logging.getLogger('yolov5')
# Packages whose nn.Module classes a checkpoint may contain (imported ones only: what the model code uses)
MODULE_PACKAGES = ('models', 'torch.nn.modules', 'torchvision.models', 'torchvision.ops')


class UntrustedCheckpoint(pickle.UnpicklingError):
    """A checkpoint that needs a global outside the YOLOv5 allowlist."""


def _module_classes():
    # (class, 'module.name') for every nn.Module class reachable by name in MODULE_PACKAGES; names that alias a
    # class (models.yolo.Model = DetectionModel, as older checkpoints pickled it) are allowed under that name too
    import models.yolo  # noqa: F401  (imports models.common, models.experimental and the overlay's modules)
    try:
        import torchvision.models  # noqa: F401
        import torchvision.ops  # noqa: F401
    except ImportError:
        pass
    found = set()
    for name, module in list(sys.modules.items()):
        if module is None or not any(name == p or name.startswith(p + '.') for p in MODULE_PACKAGES):
            continue
        for attr, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, torch.nn.Module) and value is not torch.nn.Module:
                found.add((value, f'{name}.{attr}'))
    return found


def _numpy_globals():
    # numpy arrays and scalars (train.py's best_fitness is an array of one float) and their dtypes; an array's
    # items still go through the same unpickler
    import numpy as np
    core = getattr(np, '_core', None) or np.core
    dtypes = [v for v in vars(getattr(np, 'dtypes', object)).values() if inspect.isclass(v)]
    return [np.ndarray, core.multiarray._reconstruct, core.multiarray.scalar, np.dtype, *dtypes]


def _method_lookup(classes):
    # Segment stores Detect.forward as an attribute, which pickles as getattr(Detect, 'forward'): allow exactly
    # that, a public function of an allowed class, never getattr in general (it reaches any object's internals)
    def getattr_of_allowed_class(obj, name):
        value = getattr(obj, name, None) if obj in classes and not name.startswith('_') else None
        if not inspect.isfunction(value):
            raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not a method of a YOLOv5 model class')
        return value
    return getattr_of_allowed_class, 'builtins.getattr'


def _transform_classes():
    # classify/train.py saves the model with its test transforms (model.transforms, classify_transforms()): a
    # torchvision Compose of utils/augmentations.py's CenterCrop and ToTensor and torchvision's Normalize
    import torchvision.transforms as T
    from utils import augmentations
    return [T.Compose, T.Normalize, T.Resize, T.CenterCrop, T.ToTensor, T.InterpolationMode, augmentations.CenterCrop,
            augmentations.ToTensor, augmentations.LetterBox]


def _path_globals():
    # classify/train.py saves its options with save_dir as a pathlib path
    import pathlib
    return [pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]


def allowed_globals():
    """Everything a YOLOv5 detection, segmentation or classification checkpoint may unpickle, beyond tensors."""
    classes = _module_classes()
    return [*classes, _method_lookup({c for c, _ in classes}), *_transform_classes(), *_numpy_globals(),
            *_path_globals()]


def _global_name(entry):
    obj, name = entry if isinstance(entry, tuple) else (entry, None)
    return name or f'{obj.__module__}.{obj.__qualname__}'


def disallowed_globals(file, allowed):
    """Names of the globals in file that the allowlist lacks, in the order torch lists them."""
    names = {_global_name(a) for a in allowed}
    try:
        return [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(file) if g not in names]
    except Exception:  # legacy (non-zip) files: torch's message names the global
        return []


def load_checkpoint(file, map_location='cpu'):
    # torch.load of a YOLOv5 checkpoint with torch's safe unpickler and the YOLOv5 allowlist
    if os.environ.get(TRUST_ENV, '').lower() in ('1', 'true', 'yes'):
        LOGGER.warning(f'{TRUST_ENV} is set: loading {file} with full unpickling (for files you trust)')
        return torch.load(file, map_location=map_location, weights_only=False)
    allowed = allowed_globals()
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        extra = disallowed_globals(file, allowed)
        if extra:
            more = f" (and {len(extra) - 1} more: {', '.join(extra[1:4])})" if extra[1:] else ''
            what = f'it needs {extra[0]}{more}'
        else:  # torch's reason sits between its boilerplate lines
            reason = re.search(r'WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)', str(e), re.S)
            what = reason.group(1) if reason else str(e).splitlines()[0]
        raise UntrustedCheckpoint(
            f'refused to load {file}: {what}. No YOLOv5 checkpoint needs that, and unpickling it could run code. '
            f'If you trust this file (you made it, or it comes from someone you trust), load it with '
            f'{TRUST_ENV}=1 in the environment.') from None
