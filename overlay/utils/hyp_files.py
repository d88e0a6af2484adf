# --hyp BASE[,VARIANT...]: hyperparameter YAMLs layered left to right, every key checked before training
# A variant file (configs/hyps/eiou.yaml) holds only the keys it changes, so the base (learning rate, augmentation)
# is the user's choice and an ablation row changes nothing but its name. A key YOLOv5 and this overlay do not know
# (a typo such as iou_typ) would otherwise be ignored silently and the run labelled with what it did not train.
import difflib
import math
from pathlib import Path

import yaml

from utils.loss_options import NEW_KEYS, validate_loss_hyp

# Keys of v7.0's data/hyps/*.yaml, all read by train.py and its dataloaders
REQUIRED_KEYS = ('lr0', 'lrf', 'momentum', 'weight_decay', 'warmup_epochs', 'warmup_momentum', 'warmup_bias_lr', 'box',
                 'cls', 'cls_pw', 'obj', 'obj_pw', 'iou_t', 'anchor_t', 'fl_gamma', 'hsv_h', 'hsv_s', 'hsv_v', 'degrees',
                 'translate', 'scale', 'shear', 'perspective', 'flipud', 'fliplr', 'mosaic', 'mixup', 'copy_paste')
OPTIONAL_KEYS = ('anchors', 'label_smoothing')  # anchors per cell (hyp.VOC.yaml, --evolve); set by train.py
KNOWN_KEYS = (*REQUIRED_KEYS, *OPTIONAL_KEYS, *NEW_KEYS)
SEPARATOR = ','


class HypError(ValueError):
    """A hyp file or key that cannot be trained with; the message names it."""


def hyp_files(spec):
    """The files of a --hyp value: 'base.yaml,variant.yaml' -> ['base.yaml', 'variant.yaml']."""
    return [part.strip() for part in str(spec).split(SEPARATOR) if part.strip()]


def resolve_hyp(spec, find=lambda f: f):
    # train.py's check: each file through `find` (check_yaml: a path, or a name under the tree's data/)
    return SEPARATOR.join(str(find(f)) for f in hyp_files(spec))


def read_hyp_file(path):
    try:
        data = yaml.safe_load(Path(path).read_text(errors='ignore'))
    except FileNotFoundError:
        raise HypError(f'hyp file {path} not found') from None
    except yaml.YAMLError as e:
        raise HypError(f'hyp file {path} is not valid YAML: {e}') from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HypError(f'hyp file {path} must hold `key: value` lines, not a {type(data).__name__}')
    return data


def check_keys(hyp, origin):
    """Unknown keys are errors naming the closest valid key; YOLOv5's own keys must be numbers."""
    for key, value in hyp.items():
        if key not in KNOWN_KEYS:
            close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ''
            raise HypError(f"hyp key '{key}' ({origin}) is not a YOLOv5 or overlay key; {hint}"
                           f"valid keys: {', '.join(KNOWN_KEYS)}")
        if key in REQUIRED_KEYS and (isinstance(value, bool) or not isinstance(value, (int, float))
                                     or not math.isfinite(value)):
            raise HypError(f'hyp {key}={value!r} ({origin}) is not valid; it must be a number')


def load_hyp(hyp):
    """The hyp dict train.py trains with, from a dict or from 'base.yaml[,variant.yaml...]' (later files win)."""
    if isinstance(hyp, dict):
        merged, origins = dict(hyp), {k: 'hyp' for k in hyp}
    else:
        files = hyp_files(hyp)
        if not files:
            raise HypError('no hyp file given')
        merged, origins = {}, {}
        for f in files:
            layer = read_hyp_file(f)
            check_keys(layer, f'in {f}')
            merged.update(layer)
            origins.update({k: f'in {f}' for k in layer})
    check_keys(merged, 'hyp')
    missing = [k for k in REQUIRED_KEYS if k not in merged]
    if missing:
        given = 'the hyp' if isinstance(hyp, dict) else ' + '.join(hyp_files(hyp))
        example = 'variant.yaml' if isinstance(hyp, dict) else hyp_files(hyp)[-1]
        raise HypError(f'hyp is missing {", ".join(missing)} ({given}: only some keys). Put a complete base first '
                       f'and layer variants on it, e.g. --hyp hyp.scratch-low.yaml{SEPARATOR}{example}')
    try:
        validate_loss_hyp(merged)
    except ValueError as e:
        key = str(e).split('=', 1)[0].removeprefix('hyp ')
        raise HypError(f'{e} ({origins.get(key, "hyp")})') from None
    return merged
