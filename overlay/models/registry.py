# The overlay's model-YAML modules, discovered: every file of models/ that upstream v7.0 does not have is imported,
# and each class that declares `yaml_names` (and inherits or declares a `yaml_rule` from models/yaml_rules.py)
# is registered under those names. A new module is one file here plus a YAML: nothing to edit in this file.
import difflib
import importlib
from pathlib import Path

import torch.nn as nn

from models.yaml_rules import ModelYAMLError, Row
from models.yaml_values import is_layer, module_class

UPSTREAM_FILES = {'__init__', 'common', 'experimental', 'tf', 'yolo'}  # models/*.py of v7.0 (tf.py needs TF)
NOT_MODULE_FILES = {'registry', 'yaml_rules', 'yaml_values'}


def overlay_files():
    return sorted(p.stem for p in Path(__file__).parent.glob('*.py') if p.stem not in UPSTREAM_FILES | NOT_MODULE_FILES)


def register(modules):
    """{YAML name: class} of the classes the modules define that declare yaml_names; two classes claiming one
    name is an error naming both."""
    found = {}
    for module in modules:
        for cls in vars(module).values():
            if not (isinstance(cls, type) and cls.__module__ == module.__name__ and 'yaml_names' in vars(cls)):
                continue
            if not callable(getattr(cls, 'yaml_rule', None)):
                raise TypeError(f'{cls.__module__}.{cls.__qualname__} declares yaml_names but no yaml_rule')
            for name in cls.yaml_names:
                if name in found and found[name] is not cls:
                    raise TypeError(f'YAML name {name!r} is claimed by both {found[name].__module__}.'
                                    f'{found[name].__qualname__} and {cls.__module__}.{cls.__qualname__}')
                found[name] = cls
    return found


def discover():
    """{YAML name: class} of every overlay module file in models/."""
    return register(importlib.import_module(f'models.{stem}') for stem in overlay_files())


OVERLAY_MODULES = discover()


def is_overlay(m):
    return m in OVERLAY_MODULES.values()


def _known_names(namespace):
    # what a model YAML may name: the overlay's names, upstream's module classes, torch.nn's layers as nn.X
    upstream = {k for k, v in namespace.items() if is_layer(v)}
    torch_nn = {f'nn.{k}' for k, v in vars(nn).items() if is_layer(v)}
    return sorted(set(OVERLAY_MODULES) | upstream | torch_nn)


def closest_names(name, known, n=3):
    # case-insensitive, since posts write conv_bn_hswish where a class is Conv_BN_HSwish (both are then named)
    by_lower = {}
    for k in known:
        by_lower.setdefault(k.lower(), []).append(k)
    return [k for low in difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.5) for k in by_lower[low]]


def resolve_module(name, index, namespace):
    """The class a model YAML row names: an overlay name, else a module class of models/yolo.py's namespace (what
    upstream's eval found: common.py's classes, nn.X, ...), looked up, never evaluated."""
    if name in OVERLAY_MODULES:
        return OVERLAY_MODULES[name]
    try:
        return module_class(name, namespace, f'layer {index}')
    except KeyError:
        close = closest_names(name, _known_names(namespace))
        hint = f'closest known: {", ".join(close)}' if close else 'no known module is close'
        raise ModelYAMLError(f'layer {index}: unknown module {name!r} ({hint}); the YAML names of the overlay '
                             f'modules are listed in the README (models/registry.py discovers them)') from None


def overlay_args(m, args, ch, f, n, gw, i):
    """(constructor args, output channels, repeats) for overlay module m at layer i of a model YAML."""
    row = Row(index=i, name=m.yaml_names[0], source=f, repeats=n, args=list(args), channels=ch, width=gw)
    args, c2, n = m.yaml_rule(m, row)
    check = getattr(m, 'check_args', None)
    if check is not None:
        try:
            check(*args)
        except ValueError as e:
            raise row.error(str(e)) from None
    return args, c2, n
