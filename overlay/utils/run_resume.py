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
