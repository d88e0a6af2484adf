"""The registry of YAML modules: discovered from the overlay's files, every name builds and trains a step in a model,
an unknown name is an error naming the layer and the closest names, and a new module is one file."""
import ast
import shutil
import subprocess
import textwrap

import pytest
import torch
import yaml
from conftest import PROJECT, PY, SCRIPT_ENV

OVERLAY_MODELS = PROJECT / 'overlay' / 'models'
SHIPPED = sorted((PROJECT / 'configs' / 'models').glob('*.yaml'))


def declared_names():
    """The YAML names the overlay's files declare, read from their source (not from the registry under test):
    `yaml_names = (...)` in a class, and c3_family(X, 'NAME', aliases=(...)) which adds NAME1/2/3."""
    names = set()
    for path in sorted(OVERLAY_MODELS.glob('*.py')):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'yaml_names' for t in node.targets):
                names.update(ast.literal_eval(node.value))
            if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'c3_family':
                base = ast.literal_eval(node.args[1])
                aliases = next((ast.literal_eval(k.value) for k in node.keywords if k.arg == 'aliases'), ())
                names.update({base, *aliases, *(f'{base}{p}' for p in (1, 2, 3))})
    return sorted(names)


NAMES = declared_names()


def test_every_declared_name_is_registered_and_none_shadows_upstream(yolo):
    import models.yolo
    from models.registry import OVERLAY_MODULES
    assert sorted(OVERLAY_MODULES) == NAMES
    assert not set(NAMES) & set(vars(models.yolo)), 'an overlay name would shadow an upstream one'


def test_two_classes_claiming_one_name_is_an_error(yolo):
    import types

    import models.squeeze_excitation as se
    from models.registry import register
    from models.yaml_rules import attention
    clash = types.ModuleType('models.zz_clash')  # a second file declaring SE
    clash.AnotherSE = type('AnotherSE', (torch.nn.Identity,), {'__module__': clash.__name__, 'yaml_names': ('SE',),
                                                              'yaml_rule': attention})
    with pytest.raises(TypeError, match=r"'SE' is claimed by both models.squeeze_excitation.SE and .*AnotherSE"):
        register([se, clash])


def same_arguments(rule):
    # rules whose YAML rows read the same arguments: a donor row of either fits a module of the other
    from models import yaml_rules as r
    return {r.conv_like: {r.conv_like, r.fixed_channels}, r.fixed_channels: {r.conv_like, r.fixed_channels},
            r.parameter_free: {r.parameter_free, r.attention}}.get(rule, {rule})


def donor_rows():
    """(yaml file, row index, class) of every overlay module row of the shipped YAMLs."""
    from models.registry import OVERLAY_MODULES
    rows = []
    for path in SHIPPED:
        cfg = yaml.safe_load(path.read_text())
        for i, row in enumerate(cfg['backbone'] + cfg['head']):
            if row[2] in OVERLAY_MODULES:
                rows.append((path, i, OVERLAY_MODULES[row[2]]))
    return rows


@pytest.mark.parametrize('name', NAMES)
def test_every_registered_name_builds_and_trains_a_step(yolo, name):
    """Each name goes where a shipped YAML uses a module whose YAML rule reads the same arguments (so a module with
    a rule of its own needs a shipped YAML of its own), builds, runs a training step, and gets gradients."""
    from models.registry import OVERLAY_MODULES
    from models.yolo import Model
    cls = OVERLAY_MODULES[name]
    candidates = [(p, i) for p, i, donor in donor_rows() if donor.yaml_rule in same_arguments(cls.yaml_rule)]
    assert candidates, f'no shipped YAML uses a module built by {cls.yaml_rule.__name__}: add one for {name}'
    errors = []
    for path, i in candidates:
        cfg = yaml.safe_load(path.read_text())
        layers = cfg['backbone'] + cfg['head']
        inputs = getattr(cls, 'n_inputs', None)
        if inputs is not None and len(layers[i][0]) not in (inputs if isinstance(inputs, tuple) else (inputs,)):
            continue
        layers[i][2] = name
        torch.manual_seed(0)
        try:
            model = Model(cfg, nc=3).train()
        except (TypeError, ValueError) as e:  # another module of the rule, but other constructor arguments
            errors.append(f'{path.name} row {i}: {e}')
            continue
        out = model(torch.randn(2, 3, 64, 64))
        sum(o.square().mean() for o in out).backward()
        built = [m for m in model.modules() if type(m) is cls]
        assert built, name
        for m in built:  # gradients reach it (not every unit: a tiny ReLU layer may start dead)
            grads = [p.grad for p in m.parameters() if p.grad is not None]
            assert grads or not list(m.parameters()), name
            assert not grads or sum(g.abs().sum() for g in grads) > 0, name
        return
    pytest.fail(f'{name} built in none of its rule\'s rows: {errors}')


def test_an_unknown_module_names_the_layer_and_the_closest_names(yolo):
    from models.yolo import Model
    from models.yaml_rules import ModelYAMLError
    cfg = yaml.safe_load((PROJECT / 'configs' / 'models' / 'yolov5s_MobileNetV3-Small.yaml').read_text())
    cfg['backbone'][3][2] = 'MobileNetv3_Blok'
    with pytest.raises(ModelYAMLError, match=r"layer 3: unknown module 'MobileNetv3_Blok' \(closest known: "
                                             r"MobileNetV3_Block"):
        Model(cfg, nc=3)
    cfg['backbone'][3][2] = 'conv_bn_hswsh'
    with pytest.raises(ModelYAMLError, match=r"layer 3: unknown module 'conv_bn_hswsh' \(closest known: "
                                             r"(Conv_BN_HSwish, conv_bn_hswish|conv_bn_hswish, Conv_BN_HSwish)"):
        Model(cfg, nc=3)
    cfg['backbone'][3][2] = 'nn.Upsampel'
    with pytest.raises(ModelYAMLError, match=r"layer 3: unknown module 'nn.Upsampel' \(closest known: nn.Upsample"):
        Model(cfg, nc=3)


def test_a_new_module_is_one_overlay_file_and_one_yaml(tree, tmp_path):
    """Drop one file into models/ of a copy of the tree and name it in a YAML: train.py's parse_model builds it."""
    copy = tmp_path / 'yolov5'
    shutil.copytree(tree, copy, ignore=shutil.ignore_patterns('.git', 'runs', '__pycache__'))
    (copy / 'models' / 'channel_gate.py').write_text(textwrap.dedent('''
        # a user's module: one learnable gate per channel
        import torch
        import torch.nn as nn
        from models.yaml_rules import attention

        class ChannelGate(nn.Module):
            yaml_names = ('ChannelGate', 'CG')
            yaml_rule = attention  # YAML [channels], output = input

            def __init__(self, channels):
                super().__init__()
                self.gate = nn.Parameter(torch.zeros(channels))

            def forward(self, x):
                return x * self.gate.sigmoid()[:, None, None]
        '''))
    cfg = yaml.safe_load((PROJECT / 'configs' / 'models' / 'yolov5s_EMA.yaml').read_text())
    for row in cfg['head']:
        if row[2] == 'EMA':
            row[2] = 'CG'
    (tmp_path / 'gate.yaml').write_text(yaml.safe_dump(cfg))
    r = subprocess.run([PY, '-c', 'import sys; from models.yolo import Model; m = Model(sys.argv[1], nc=3); '
                        'print(sorted({type(x).__name__ for x in m.modules()} & {"ChannelGate"}), '
                        'sum(x.numel() for x in m.model[18].parameters()))', str(tmp_path / 'gate.yaml')],
                       cwd=copy, env=SCRIPT_ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["['ChannelGate']", '128']  # the real input's channels (256 x width 0.5)


def test_the_readme_lists_every_yaml_name():
    # the unknown-module error sends users to the README's table of names
    readme = (PROJECT / 'README.md').read_text()
    assert [n for n in NAMES if f'`{n}`' not in readme] == []
