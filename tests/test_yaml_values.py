"""Model YAML strings are read as names and literals (models/yaml_values.py), as v7.0's eval read real YAMLs."""
import pytest


@pytest.fixture
def values(yolo):
    import models.yolo as yolo_module
    from models import yaml_values
    return yaml_values, vars(yolo_module)


def test_what_real_yamls_write_reads_as_v70_read_it(values):
    import torch.nn as nn
    from models.common import Conv
    v, ns = values
    variables = {'nc': 3, 'anchors': [[10, 13]]}
    read = lambda text: v.argument(text, variables, ns, 'layer 1')
    assert read('nc') == 3 and read('anchors') == [[10, 13]]
    assert read('None') is None and read('True') is True and read('0.5') == 0.5 and read('-1') == -1
    assert read("'nearest'") == 'nearest' and read('nearest') == 'nearest'  # an unknown word stays a string
    assert read('[1, 2]') == [1, 2] and read('Conv') is Conv and read('nn.Upsample') is nn.Upsample
    assert v.module_class('nn.Upsample', ns, 'layer 1') is nn.Upsample


@pytest.mark.parametrize('text, cls, args', [('nn.SiLU()', 'SiLU', ()), ('nn.LeakyReLU(0.1)', 'LeakyReLU', (0.1,)),
                                             ('nn.ReLU(inplace=True)', 'ReLU', ()), ('nn.Hardswish', 'Hardswish', ())])
def test_activations_as_upstream_yamls_write_them(values, text, cls, args):
    v, ns = values
    act = v.activation(text, ns)
    assert type(act).__name__ == cls
    if args:
        assert act.negative_slope == args[0]


@pytest.mark.parametrize('text, why', [
    ("__import__('os').system('x')", 'not an activation'),
    ('nn.Linear(40000, 40000)', 'not a torch.nn activation'),  # a layer that allocates what the text says
    ('nn.PReLU(num_parameters=10**9)', 'not a torch.nn activation'),
    ('nn.LeakyReLU(x)', 'not literals'),
    ('nn.SiLU(**kw)', 'not literals'),
    ('os.system', 'not a torch.nn activation')])
def test_activations_that_would_run_or_allocate_are_refused(values, text, why):
    from models.yaml_rules import ModelYAMLError
    v, ns = values
    with pytest.raises(ModelYAMLError, match=why):
        v.activation(text, ns)


@pytest.mark.parametrize('text', ["open('x', 'w')", 'nc * 2', "[open('x')]", 'LOGGER', 'Conv.__init__', 'os.system',
                                  'lambda: 0', "().__class__"])
def test_arguments_that_are_code_or_other_objects_are_refused(values, text):
    from models.yaml_rules import ModelYAMLError
    v, ns = values
    with pytest.raises(ModelYAMLError, match=r"layer 4: .* never evaluated"):
        v.argument(text, {'nc': 3}, ns, 'layer 4')


def test_module_names_resolve_to_module_classes_only(values):
    from models.yaml_rules import ModelYAMLError
    v, ns = values
    for text in ('LOGGER', 'torch.load', 'Conv()'):
        with pytest.raises(ModelYAMLError):
            v.module_class(text, ns, 'layer 0')
    with pytest.raises(KeyError):
        v.module_class('NoSuchModule', ns, 'layer 0')  # the registry then names the closest known ones


@pytest.mark.parametrize('text', ['DetectMultiBackend', 'AutoShape', 'Ensemble', 'DetectionModel', 'Model',
                                  'SegmentationModel', 'ClassificationModel', 'BaseModel', 'torch.jit.ScriptModule',
                                  'torch.nn.parallel.DistributedDataParallel'])
def test_classes_that_load_files_or_build_whole_models_are_not_layers(values, text):
    # DetectMultiBackend('x.torchscript' or a URL) loads TorchScript, whose code runs, or downloads a file it names
    from models.yaml_rules import ModelYAMLError
    v, ns = values
    with pytest.raises(ModelYAMLError, match='not a layer'):
        v.module_class(text, ns, 'layer 0')
    with pytest.raises(ModelYAMLError, match='not a layer'):
        v.argument(text, {'nc': 3}, ns, 'layer 0')  # a class handed to a layer as an argument, too


def test_every_layer_of_upstreams_files_and_of_torch_nn_is_one(values):
    # what upstream's YAMLs and the posts' name: all of common.py's and experimental.py's layers, Detect, Segment,
    # the overlay's modules, and torch.nn's layers
    import models.common as common
    import models.experimental as experimental
    import torch.nn as nn
    from models.registry import OVERLAY_MODULES
    v, ns = values
    upstream = [c for m in (common, experimental) for c in vars(m).values()
                if isinstance(c, type) and issubclass(c, nn.Module) and c.__module__ == m.__name__]
    layers = {c.__name__ for c in upstream} - {'DetectMultiBackend', 'AutoShape', 'Ensemble'}
    assert {'Conv', 'C3', 'SPPF', 'Concat', 'Focus', 'GhostConv', 'MixConv2d', 'Proto', 'Classify'} <= layers
    for name in [*layers, 'Detect', 'Segment', 'nn.Upsample', 'nn.MaxPool2d', 'nn.Identity', 'torch.nn.Conv2d']:
        assert v.is_layer(v.module_class(name, ns, 'layer 0')), name
    assert all(v.is_layer(cls) for cls in OVERLAY_MODULES.values())
