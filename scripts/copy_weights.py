#!/usr/bin/env python3
"""Copy upstream's released weights into the project's weights/ folder, checking each known release's sha256.

    python scripts/copy_weights.py SRC.pt [SRC.pt ...] --to weights/

What `make weights` runs with ../shared/weights/*.pt: train.py, val.py, detect.py and export.py then find
`--weights yolov5n.pt` there offline (utils/local_weights.py). A file whose bytes differ from the release it is
named after is refused; a name we hold no hash for is copied as it is, and said.
"""
import argparse
import shutil
import sys
from pathlib import Path

from overlay_import import overlay_module


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('sources', nargs='+', type=Path)
    p.add_argument('--to', type=Path, default=Path(__file__).resolve().parents[1] / 'weights')
    opt = p.parse_args(argv)
    weights = overlay_module('local_weights')
    opt.to.mkdir(parents=True, exist_ok=True)
    for src in opt.sources:
        if not src.is_file():
            sys.exit(f'copy_weights: {src} not found')
        expected, got = weights.KNOWN.get(src.name), weights.sha256(src)
        if expected and got != expected:
            sys.exit(f'copy_weights: {src} is not upstream\'s {src.name}: sha256 {got}, expected {expected}')
        tmp = opt.to / f'.{src.name}.partial'
        shutil.copyfile(src, tmp)
        tmp.replace(opt.to / src.name)
        print(f'{opt.to / src.name}: ' + ('sha256 checked' if expected else f'no known sha256 (copied as is: {got})'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
