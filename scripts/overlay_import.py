"""Import a module of overlay/utils/ that needs no YOLOv5 import (utils/model_names.py), from the project itself:
the scripts and the built tree then share one implementation, whether or not a tree is built."""
import importlib.util
from pathlib import Path

OVERLAY_UTILS = Path(__file__).resolve().parents[1] / 'overlay' / 'utils'


def overlay_module(name):
    spec = importlib.util.spec_from_file_location(f'overlay_{name}', OVERLAY_UTILS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
