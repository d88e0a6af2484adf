#!/usr/bin/env python3
"""Benchmarks (a table, not a test): model size and speed of every shipped YAML against yolov5s.

    python scripts/bench.py                          # CPU, 640 px, batch 8
    python scripts/bench.py --device 0 --amp         # GPU, autocast
    python scripts/bench.py --models yolov5s_EMA --img 320 640

Times are medians over --repeats after a warm-up; ratios are against yolov5s measured in the same run
(interleaved, so drift of a noisy machine hits every model alike).
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
MODELS = PROJECT / 'configs' / 'models'


def import_tree(tree: Path):
    if not (tree / 'models' / 'yolo.py').exists():
        raise SystemExit(f'bench: {tree} is not a built tree; run `make apply` first')
    sys.path.insert(0, str(tree))
    logging.getLogger('yolov5').setLevel(logging.WARNING)


def resolve_cfg(name: str, tree: Path) -> Path:
    for candidate in (Path(name), MODELS / f'{name}.yaml', MODELS / name, tree / 'models' / f'{name}.yaml',
                      tree / 'models' / name):
        if candidate.is_file():
            return candidate
    valid = sorted(p.stem for p in MODELS.glob('*.yaml')) + ['yolov5n', 'yolov5s', 'yolov5m', 'yolov5l', 'yolov5x']
    raise SystemExit(f'bench: unknown model {name!r}; valid: {", ".join(valid)}')


def sync(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_call(fn, device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def model_table(opt, tree: Path):
    import torch
    from models.yolo import Model

    device = torch.device('cuda:0' if opt.device not in ('cpu', '') and torch.cuda.is_available() else
                          'cuda:0' if opt.device == '' and torch.cuda.is_available() else 'cpu')
    names = opt.models or ['yolov5s'] + sorted(p.stem for p in MODELS.glob('*.yaml'))
    if 'yolov5s' not in names:
        names = ['yolov5s'] + names
    models = {}
    for name in names:
        torch.manual_seed(0)
        m = Model(str(resolve_cfg(name, tree)), nc=80).to(device)
        models[name] = m
    rows = []
    for img in opt.img:
        x = torch.rand(opt.batch, 3, img, img, device=device)
        step, infer = {n: [] for n in names}, {n: [] for n in names}
        for _ in range(opt.rounds):  # interleave models round by round
            for name, m in models.items():
                def train_step():
                    m.train()
                    with torch.autocast(device.type, enabled=opt.amp and device.type == 'cuda'):
                        out = m(x)
                        loss = sum(o.float().square().mean() for o in out)
                    loss.backward()
                    m.zero_grad(set_to_none=True)

                @torch.no_grad()
                def infer_step():
                    m.eval()
                    with torch.autocast(device.type, enabled=opt.amp and device.type == 'cuda'):
                        m(x)

                step[name].append(time_call(train_step, device, opt.repeats))
                infer[name].append(time_call(infer_step, device, opt.repeats))
        for name, m in models.items():
            rows.append(dict(model=name, img=img, layers=len(list(m.modules())),
                             params=sum(p.numel() for p in m.parameters()), gflops=gflops(m, device),
                             step_ms=1e3 * statistics.median(step[name]),
                             infer_ms=1e3 * statistics.median(infer[name]) / opt.batch,
                             step_ratio=statistics.median(step[name]) / statistics.median(step['yolov5s']),
                             infer_ratio=statistics.median(infer[name]) / statistics.median(infer['yolov5s'])))
    return device, rows


def gflops(model, device, img=640):
    # thop MACs x2 at 640 px, as YOLOv5's model_info reports
    import copy

    import torch
    try:
        import thop
    except ImportError:
        return float('nan')
    im = torch.empty((1, 3, img, img), device=device)
    macs = thop.profile(copy.deepcopy(model).eval(), inputs=(im,), verbose=False)[0]
    return macs * 2 / 1e9


def print_model_table(device, rows, opt):
    import torch
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)'
    print(f'\nModels on {name}, batch {opt.batch}, {"AMP" if opt.amp and device.type == "cuda" else "float32"}; '
          'step = forward+backward, ratios against yolov5s\n')
    print('| model | img | layers | params | GFLOPs@640 | train step ms | x yolov5s | infer ms/img | x yolov5s |')
    print('|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['model']} | {r['img']} | {r['layers']} | {r['params'] / 1e6:.2f}M | {r['gflops']:.1f} | "
              f"{r['step_ms']:.0f} | {r['step_ratio']:.2f} | {r['infer_ms']:.1f} | {r['infer_ratio']:.2f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tree', type=Path, default=PROJECT / 'yolov5')
    p.add_argument('--models', nargs='*', help='model YAML names or paths (default: yolov5s and every shipped YAML)')
    p.add_argument('--img', type=int, nargs='+', default=[640])
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--device', default='cpu', help="'cpu', '0' (first GPU) or '' (GPU if any)")
    p.add_argument('--amp', action='store_true', help='autocast on GPU, as train.py does')
    p.add_argument('--repeats', type=int, default=2, help='timed calls per round')
    p.add_argument('--rounds', type=int, default=2, help='interleaved rounds over all models')
    opt = p.parse_args(argv)
    import_tree(opt.tree.resolve())
    device, rows = model_table(opt, opt.tree)
    print_model_table(device, rows, opt)
    return 0


if __name__ == '__main__':
    sys.exit(main())
