# A resumed run ends with the same files as an uninterrupted one: whole checkpoints, one results row per epoch
import os
from pathlib import Path

import torch


def save_atomic(obj, path):
    # torch.save to a temporary file, then rename: a run killed mid-write keeps the previous checkpoint, not half a file
    path = Path(path)
    tmp = path.with_name(path.name + '.tmp')
    torch.save(obj, tmp)
    os.replace(tmp, path)


def trim_results(save_dir, start_epoch):
    """On --resume: drop results.csv rows of epochs the checkpoint does not hold (killed after the row was written,
    before last.pt was): they are trained again and would appear twice. Returns the epochs dropped."""
    results = Path(save_dir) / 'results.csv'
    lines = results.read_text().splitlines(keepends=True) if results.exists() else []
    epoch = lambda line: int(float(line.split(',')[0]))
    dropped = [epoch(line) for line in lines[1:] if epoch(line) >= start_epoch]
    if dropped:  # the other lines kept byte for byte, as YOLOv5's logger wrote them
        tmp = results.with_name(results.name + '.tmp')
        tmp.write_text(''.join(lines[:1] + [line for line in lines[1:] if epoch(line) < start_epoch]))
        os.replace(tmp, results)
    return dropped


def options_from_checkpoint(saved, given, last):
    """--resume of a last.pt without its run's opt.yaml: the options to resume with. A checkpoint may come from
    anywhere, so it gives only data: numbers, flags, the hyp (whose keys train.py checks) and single words
    (optimizer SGD, cache ram); every path or other string comes from the command line (given), the run folder is
    the one last.pt is in, and a resumed run never evolves (evolve is what hands --bucket to gsutil)."""
    import logging
    import re

    def is_data(v):
        if v is None or type(v) in (int, float, bool):
            return True
        if type(v) is str:
            return re.fullmatch(r'\w{0,32}', v) is not None  # a word: no path, no shell syntax
        return type(v) in (list, tuple) and all(is_data(x) for x in v)

    saved = saved if isinstance(saved, dict) else {}
    options = {**given, 'save_dir': str(Path(last).parent.parent), 'evolve': None}
    ignored = []
    for key, value in saved.items():
        if key in ('save_dir', 'evolve') or key not in given:
            continue
        if key == 'hyp' and isinstance(value, dict) and all(type(k) is str and is_data(v) for k, v in value.items()):
            options[key] = value
        elif is_data(value):
            options[key] = value
        elif value != given[key]:
            ignored.append(key)
    if ignored:
        logging.getLogger('yolov5').warning(
            f'--resume {last}: no opt.yaml beside it, so its options come from the checkpoint, which is trusted with '
            f'numbers and flags only: {", ".join(ignored)} taken from the command line instead')
    return options
