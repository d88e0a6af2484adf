#!/usr/bin/env python3
"""Benchmarks (tables, not tests): size and speed of every shipped model YAML against yolov5s, and the time
of one loss call for every shipped loss hyp against upstream's CIoU.

    python scripts/bench.py                          # both tables, CPU: models at 640 px batch 8, losses
    python scripts/bench.py models --device 0 --amp  # GPU, autocast as train.py uses it
    python scripts/bench.py models --models yolov5s_EMA --img 320 640
    python scripts/bench.py losses

Each time is the best of --rounds x --repeats calls after a warm-up, models interleaved round by round, and a
ratio is against yolov5s (or CIoU) measured in the same run. Best-of rather than median: on a shared 2-core
machine single training steps of the same model varied by +-15%, and that noise only ever adds time.
"""
from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import time
from pathlib import Path

from overlay_import import overlay_module

PROJECT = Path(__file__).resolve().parents[1]
MODELS = PROJECT / 'configs' / 'models'


def import_tree(tree: Path):
    if not (tree / 'models' / 'yolo.py').exists():
        raise SystemExit(f'bench: {tree} is not a built tree; run `make apply` first')
    sys.path.insert(0, str(tree))
    import utils.general  # noqa: F401 (sets up the 'yolov5' logger, which would print every model summary)
    logging.getLogger('yolov5').setLevel(logging.WARNING)


def resolve_cfg(name: str, tree: Path) -> Path:
    # a path, or a name (with or without .yaml) in configs/models/ or the tree's models/, at any scale (yolov5n_EMA)
    if Path(name).is_file():
        return Path(name)
    file = name if name.endswith(('.yaml', '.yml')) else f'{name}.yaml'
    try:
        return overlay_module('model_names').model_yaml(file, [MODELS, tree / 'models'])
    except FileNotFoundError as e:
        valid = sorted(p.stem for p in MODELS.glob('*.yaml')) + [f'yolov5{s}' for s in 'nsmlx']
        raise SystemExit(f'bench: unknown model {name!r}: {e}; valid: {", ".join(valid)} (any of them at any scale: '
                         f'yolov5n_EMA)') from None


def sync(device):
    import torch
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_call(fn, device, repeats: int, warmup: int = 1) -> float:
    # best of `repeats` calls, in seconds
    for _ in range(warmup):
        fn()
    sync(device)
    best = float('inf')
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def select_device(name: str):
    # train.py's device selection ('cpu', '' for the first GPU if any, '0' or '0,1': the first of them is used),
    # with its failure as a one-line error
    from utils.torch_utils import select_device as yolov5_select_device
    try:
        return yolov5_select_device(name)
    except AssertionError as e:
        raise SystemExit(f'bench: {e}') from None


def device_name(device):
    import torch
    return torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU ({torch.get_num_threads()} threads)'


def precision(opt, device):
    return 'AMP' if opt.amp and device.type == 'cuda' else 'float32'


def model_table(opt, tree: Path, device):
    import torch
    from models.yolo import Model

    names = opt.models or ['yolov5s'] + sorted(p.stem for p in MODELS.glob('*.yaml'))
    if 'yolov5s' not in names:
        names = ['yolov5s'] + names
    models, fused = {}, {}
    for name in names:
        torch.manual_seed(0)
        m = Model(str(resolve_cfg(name, tree)), nc=80).to(device)
        models[name] = m
        fused[name] = copy.deepcopy(m).eval().fuse()  # as val.py, detect.py and export.py run it
    rows = []
    for img in opt.img:
        x = torch.rand(opt.batch, 3, img, img, device=device)
        step, infer, infer_fused = {n: [] for n in names}, {n: [] for n in names}, {n: [] for n in names}
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
                def infer_step(model):
                    model.eval()
                    with torch.autocast(device.type, enabled=opt.amp and device.type == 'cuda'):
                        model(x)

                step[name].append(time_call(train_step, device, opt.repeats))
                infer[name].append(time_call(lambda: infer_step(m), device, opt.repeats))
                infer_fused[name].append(time_call(lambda: infer_step(fused[name]), device, opt.repeats))
        for name, m in models.items():
            rows.append(dict(model=name, img=img, layers=len(list(m.modules())),
                             params=sum(p.numel() for p in m.parameters()), gflops=gflops(m, device),
                             step_ms=1e3 * min(step[name]), infer_ms=1e3 * min(infer[name]) / opt.batch,
                             step_ratio=min(step[name]) / min(step['yolov5s']),
                             infer_ratio=min(infer[name]) / min(infer['yolov5s']),
                             fused_ms=1e3 * min(infer_fused[name]) / opt.batch,
                             fused_ratio=min(infer_fused[name]) / min(infer_fused['yolov5s']),
                             bn=batchnorms(m), bn_fused=batchnorms(fused[name])))
    return rows


def batchnorms(model):
    import torch
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def gflops(model, device, img=640):
    # thop MACs x2 at 640 px, as YOLOv5's model_info reports
    import torch
    try:
        import thop
    except ImportError:
        return float('nan')
    im = torch.empty((1, 3, img, img), device=device)
    macs = thop.profile(copy.deepcopy(model).eval(), inputs=(im,), verbose=False)[0]
    return macs * 2 / 1e9


def print_model_table(device, rows, opt):
    print(f'\nModels on {device_name(device)}, batch {opt.batch}, {precision(opt, device)}; '
          'step = forward+backward; fused = after Model.fuse() (BatchNorm folded), as val/detect/export run; '
          f'ratios against yolov5s{ema_path(device, opt)}\n')
    print('| model | img | layers | params | GFLOPs@640 | train step ms | x yolov5s | infer ms/img | x yolov5s '
          '| fused infer ms/img | fused x yolov5s | BatchNorms (fused) |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['model']} | {r['img']} | {r['layers']} | {r['params'] / 1e6:.2f}M | {r['gflops']:.1f} | "
              f"{r['step_ms']:.0f} | {r['step_ratio']:.2f} | {r['infer_ms']:.1f} | {r['infer_ratio']:.2f} | "
              f"{r['fused_ms']:.1f} | {r['fused_ratio']:.2f} | {r['bn']} ({r['bn_fused']}) |")


def ema_path(device, opt):
    # which EMA training path the GPU rows took (models/ema_compiled.py: compiled under AMP only)
    if device.type != 'cuda':
        return ''
    compiled = opt.amp and os.environ.get('YOLOV5_EMA_COMPILE', '1') != '0'
    return '; EMA ' + ('compiled (torch.compile)' if compiled else 'through autograd') + ', deterministic algorithms'


def print_provenance(opt, argv):
    # what produced the tables, so that a pasted table says where it came from
    from ablation.records import provenance
    p = provenance(opt.tree.resolve(), opt.device)
    args = ' '.join(sys.argv[1:] if argv is None else argv)
    commit = p['commit'][:12] + ('-dirty' if p['commit'].endswith('-dirty') else '')
    print(f"`python scripts/bench.py {args}`: commit {commit}, {p['date']}, {p['machine']}, {p['device']}, "
          f"torch {p['torch']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('what', nargs='?', choices=('all', 'models', 'losses'), default='all', help='which table(s)')
    p.add_argument('--tree', type=Path, default=PROJECT / 'yolov5')
    p.add_argument('--models', nargs='*', help='model YAML names or paths (default: yolov5s and every shipped YAML)')
    p.add_argument('--img', type=int, nargs='+', default=[640])
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--device', default='cpu', help="'cpu', '0' (first GPU) or '' (GPU if any, as make bench)")
    p.add_argument('--amp', action='store_true', help='autocast on GPU, as train.py does')
    p.add_argument('--ema-autograd', action='store_true',
                   help="EMA through autograd on CUDA too (YOLOV5_EMA_COMPILE=0), not its compiled training path")
    p.add_argument('--repeats', type=int, default=2, help='timed calls per round')
    p.add_argument('--rounds', type=int, default=2, help='interleaved rounds over all models')
    p.add_argument('--loss-img', type=int, default=640, help='image size whose Detect outputs the losses get')
    p.add_argument('--loss-batch', type=int, default=16, help="batch of the loss table (train.py's default)")
    opt = p.parse_args(argv)
    if opt.ema_autograd:
        os.environ['YOLOV5_EMA_COMPILE'] = '0'
    import_tree(opt.tree.resolve())
    device = select_device(opt.device)
    if device.type == 'cuda':  # as train.py runs: deterministic algorithms (init_seeds(deterministic=True))
        from utils.general import init_seeds
        init_seeds(0, deterministic=True)
    print_provenance(opt, argv)
    if opt.what in ('all', 'models'):
        print_model_table(device, model_table(opt, opt.tree, device), opt)
    if opt.what in ('all', 'losses'):
        from bench_losses import loss_table, print_loss_table
        print_loss_table(f'{device_name(device)}, {precision(opt, device)}', loss_table(opt, device, time_call), opt)
    return 0


if __name__ == '__main__':
    sys.exit(main())
