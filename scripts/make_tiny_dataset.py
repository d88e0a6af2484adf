#!/usr/bin/env python3
"""Write a tiny synthetic detection dataset (filled shapes on noise) in YOLO format, for tests.

    python scripts/make_tiny_dataset.py DEST [--images 16] [--size 128] [--seed 0]

Classes: 0 square, 1 disc. Writes DEST/images/{train,val,test}, DEST/labels/..., and DEST/data.yaml
(absolute path, so it works from any working directory). Deterministic for a given seed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

NAMES = {0: 'square', 1: 'disc'}


def draw_image(rng: np.random.Generator, size: int) -> tuple[Image.Image, list[str]]:
    noise = rng.integers(0, 96, (size, size, 3), dtype=np.uint8)
    im = Image.fromarray(noise)
    draw = ImageDraw.Draw(im)
    labels = []
    for _ in range(rng.integers(1, 4)):
        cls = int(rng.integers(0, 2))
        s = int(rng.integers(size // 6, size // 3))
        x, y = (int(v) for v in rng.integers(0, size - s, 2))
        color = tuple(int(c) for c in rng.integers(150, 256, 3))
        (draw.rectangle if cls == 0 else draw.ellipse)((x, y, x + s, y + s), fill=color)
        labels.append(f'{cls} {(x + s / 2) / size:.6f} {(y + s / 2) / size:.6f} {s / size:.6f} {s / size:.6f}')
    return im, labels


def make_dataset(dest: Path, images: int = 16, size: int = 128, seed: int = 0) -> Path:
    """Create the dataset and return its data.yaml."""
    dest = Path(dest).resolve()
    rng = np.random.default_rng(seed)
    counts = {'train': images, 'val': max(2, images // 4), 'test': max(2, images // 4)}
    for split, n in counts.items():
        (dest / 'images' / split).mkdir(parents=True, exist_ok=True)
        (dest / 'labels' / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            im, labels = draw_image(rng, size)
            im.save(dest / 'images' / split / f'{split}_{i:03d}.jpg', quality=95)
            (dest / 'labels' / split / f'{split}_{i:03d}.txt').write_text('\n'.join(labels) + '\n')
    data = dest / 'data.yaml'
    names = '\n'.join(f'  {k}: {v}' for k, v in NAMES.items())
    data.write_text(f'path: {dest}\ntrain: images/train\nval: images/val\ntest: images/test\nnames:\n{names}\n')
    return data


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('dest', type=Path)
    p.add_argument('--images', type=int, default=16, help='training images (val and test get a quarter each)')
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--seed', type=int, default=0)
    opt = p.parse_args(argv)
    print(make_dataset(opt.dest, opt.images, opt.size, opt.seed))
    return 0


if __name__ == '__main__':
    sys.exit(main())
