# A class name as one folder name (patches/series: safe-crop-paths)
#
# --save-crop writes save_dir/crops/<class name>/<image>.jpg. Class names come from the checkpoint (or a data YAML,
# or ONNX metadata): a downloaded file naming a class '/home/you/.ssh' or '../../..' made v7.0 create folders and
# write crops anywhere. The name stays readable ('RBC', 'traffic light'); only what would leave the folder changes.
import os

SEPARATORS = {s for s in (os.sep, os.altsep, ':' if os.name == 'nt' else None) if s}


def path_part(name):
    """name as a single path component inside its parent: separators become '_', and '', '.', '..' get a '_' prefix."""
    part = ''.join('_' if ch in SEPARATORS else ch for ch in str(name))
    return part if part not in ('', '.', '..') else f'_{part}'
