# Shims that let YOLOv5 v7.0 run on today's numpy, Pillow, torch and setuptools (see patches/series)
import numpy as np
import torch
from packaging.version import InvalidVersion, Version

# numpy 2 removed np.trapz in favour of np.trapezoid (same maths)
trapezoid = getattr(np, 'trapezoid', None) or getattr(np, 'trapz')


def parse_version(version):
    # pkg_resources.parse_version replacement; '2.14.1+cu130' -> 2.14.1+cu130, junk -> 0
    try:
        return Version(str(version))
    except InvalidVersion:
        return Version('0')


def text_size(font, text):
    # (width, height) of text as Pillow<10 FreeTypeFont.getsize gave it: extent from the drawing origin
    _, _, right, bottom = font.getbbox(text)
    return right, bottom


def load_checkpoint(file, map_location='cpu'):
    # YOLOv5 checkpoints pickle whole nn.Modules, which torch>=2.6's weights_only=True default refuses:
    # load them with torch's safe unpickler and an allowlist of what they contain (utils/safe_load.py)
    from utils.safe_load import load_checkpoint as load  # imports models/: not at start-up (circular)
    return load(file, map_location)


def ipython_display():
    # IPython.display where IPython is installed (notebooks), else None: scripts never need it
    try:
        from IPython import display
        return display
    except ImportError:
        return None


def onnx_export_kwargs():
    # torch>=2.9 exports with the dynamo exporter by default (needs onnxscript, opset>=18); v7.0's opset-12
    # graphs come from the TorchScript exporter, which dynamo=False still selects
    import inspect
    import warnings
    if 'dynamo' not in inspect.signature(torch.onnx.export).parameters:
        return {}
    warnings.filterwarnings('ignore', message='You are using the legacy TorchScript-based ONNX export')  # chosen
    return {'dynamo': False}
