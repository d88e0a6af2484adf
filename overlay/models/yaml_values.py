# Model YAML strings read as names and literals, never evaluated (parse_model in models/yolo.py and models/tf.py)
#
# v7.0 evals a row's module name, its string arguments and the `activation:` key: a YAML, or the model.yaml
# inside a checkpoint that train.py rebuilds, could run any Python. What YAMLs really write is a module class
# (Conv, nn.Upsample), a YAML variable (nc, anchors), a literal (None, 'nearest', 0.5), and for activation a
# torch.nn activation with literal arguments (nn.SiLU(), nn.LeakyReLU(0.1)). That is what is accepted here; a
# bare unknown word stays a string as v7.0's NameError fallback left it; anything else is an error naming it.
import ast

import torch.nn as nn

from models.yaml_rules import ModelYAMLError

# torch.nn activations that hold no parameter sized by an argument (PReLU's is; MultiheadAttention lives there too)
NOT_ACTIVATIONS = {nn.PReLU, nn.MultiheadAttention}

# Modules of models/ whose classes are the layers a YAML may name (the overlay's files are added by name below)
UPSTREAM_LAYER_FILES = {'models.common', 'models.experimental', 'models.yolo'}
# nn.Modules of those files that are not layers: they load weight files or URLs (DetectMultiBackend: a TorchScript
# file runs code, a download names its own file) or build a whole model; a YAML naming one is refused
NOT_LAYERS = {'DetectMultiBackend', 'AutoShape', 'Ensemble', 'BaseModel', 'DetectionModel', 'SegmentationModel',
              'ClassificationModel'}


def _dotted(node):
    # 'nn.Upsample' -> ['nn', 'Upsample']; None for anything but names and attribute access
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def lookup(parts, namespace):
    """The object a dotted name reaches from namespace, without private attributes; KeyError if none."""
    if parts[0] not in namespace or any(p.startswith('_') for p in parts):
        raise KeyError('.'.join(parts))
    obj = namespace[parts[0]]
    for p in parts[1:]:
        if not hasattr(obj, p):
            raise KeyError('.'.join(parts))
        obj = getattr(obj, p)
    return obj


def _parse(text, where):
    try:
        return ast.parse(text.strip(), mode='eval').body
    except SyntaxError:
        return None


def _refuse(text, where, why):
    raise ModelYAMLError(f'{where}: {text!r} {why}; a model YAML names module classes, YAML variables (nc, anchors) '
                         f'and literals, and is never evaluated as Python')


def is_layer(cls):
    """Whether a model YAML may build cls: a layer of upstream's models/ files or of the overlay's, or torch.nn's
    own (nn.X). Anything else a dotted name reaches from models/yolo.py (torchvision, torch.jit, ...) is not."""
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        return False
    module = cls.__module__
    if module in UPSTREAM_LAYER_FILES:
        return cls.__name__ not in NOT_LAYERS
    if module.startswith('models.') and module.count('.') == 1:  # an overlay file (models/registry.py lists them)
        return module != 'models.tf'
    return module.startswith('torch.nn.modules.') and getattr(nn, cls.__name__, None) is cls


def _layer(cls, text, where):
    if not is_layer(cls):
        _refuse(text, where, f'names {cls.__module__}.{cls.__qualname__}, which is not a layer (a model YAML builds '
                             f"the overlay's modules, upstream's layers of models/common.py, experimental.py and "
                             f"yolo.py, and torch.nn's as nn.X)")
    return cls


def module_class(text, namespace, where, base=nn.Module):
    """The class a row's module name means: a (dotted) name in namespace that is a subclass of base, and for
    nn.Modules a layer (is_layer)."""
    node = _parse(text, where)
    parts = _dotted(node) if node is not None else None
    if parts is None:
        _refuse(text, where, 'is not a module name')
    obj = lookup(parts, namespace)  # KeyError: the caller reports an unknown name with the closest ones
    if not (isinstance(obj, type) and issubclass(obj, base)):
        _refuse(text, where, f'names {type(obj).__name__} {obj!r:.40}, not a module class')
    return _layer(obj, text, where) if issubclass(obj, nn.Module) else obj


def argument(text, variables, namespace, where):
    """A string argument of a row: a literal, a YAML variable, a module class, else the string itself."""
    node = _parse(text, where)
    if node is None:
        return text  # not Python at all: v7.0's eval failed on it too (SyntaxError is not caught there: a string)
    if isinstance(node, ast.Constant) or isinstance(node, (ast.List, ast.Tuple, ast.Dict, ast.UnaryOp)):
        try:
            return ast.literal_eval(node)
        except ValueError:
            _refuse(text, where, 'is not a literal')
    parts = _dotted(node)
    if parts is not None:
        if len(parts) == 1 and parts[0] in variables:
            return variables[parts[0]]
        try:
            obj = lookup(parts, namespace)
        except KeyError:
            if len(parts) == 1:
                return text  # an unknown bare word stays a string ('nearest'), as v7.0's NameError left it
            _refuse(text, where, 'names nothing known')
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            return _layer(obj, text, where)
        _refuse(text, where, f'names {type(obj).__name__} {parts[0]!r}, not a YAML variable or module class')
    if isinstance(node, ast.Call):
        return activation(text, namespace, where)
    _refuse(text, where, f'is a Python {type(node).__name__} expression')


def activation(text, namespace, where='activation'):
    """The `activation:` key (or an argument written as one): a torch.nn activation, called with literals."""
    node = _parse(text, where)
    call = node if isinstance(node, ast.Call) else None
    parts = _dotted(call.func if call else node) if node is not None else None
    if parts is None:
        _refuse(text, where, 'is not an activation such as nn.SiLU() or nn.LeakyReLU(0.1)')
    try:
        cls = lookup(parts, namespace)
    except KeyError:
        _refuse(text, where, 'names no known activation')
    is_activation = isinstance(cls, type) and issubclass(cls, nn.Module) and cls not in NOT_ACTIVATIONS and \
        cls.__module__ == nn.modules.activation.__name__
    if not is_activation:
        _refuse(text, where, f'names {getattr(cls, "__name__", cls)!r:.40}, not a torch.nn activation')
    try:
        args = [ast.literal_eval(a) for a in call.args] if call else []
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords} if call else {}
    except ValueError:
        _refuse(text, where, 'calls the activation with arguments that are not literals')
    if None in kwargs:
        _refuse(text, where, 'unpacks keyword arguments')
    return cls(*args, **kwargs)
