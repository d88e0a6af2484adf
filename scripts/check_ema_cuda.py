#!/usr/bin/env python3
"""EMA's compiled CUDA path against its float64 reference, on the GPU: outputs and gradients (input and every
parameter), in float32 and under AMP, for the EMA shapes of yolov5s_EMA at 640 px. The reference is autograd
through ema_forward in float64, which tests/test_models.py checks against the paper's equations.

    python scripts/check_ema_cuda.py            # needs a CUDA GPU; exit status 1 when an error is over tolerance

Tolerances (relative L2 error): 1e-3 in float32 (TF32 convolutions), 1e-2 under AMP (float16 operands).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
SHAPES = [(128, 80), (256, 40), (512, 20)]  # (channels, size): the neck outputs of yolov5s at 640 px
TOLERANCE = {'float32': 1e-3, 'AMP': 1e-2}


def relative_error(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


def check(channels, size, batch, precision, device):
    import torch
    from models import ema_compiled
    from models.ema_attention import EMA
    from models.ema_autograd import ema_forward
    torch.manual_seed(channels)
    ema = EMA(channels).to(device)
    with torch.no_grad():
        ema.gn.weight.normal_(), ema.gn.bias.normal_()
    x = torch.randn(batch, channels, size, size, device=device)
    g = torch.randn_like(x)
    reference = EMA(channels).to(device).double()
    reference.load_state_dict(ema.state_dict())
    xr = x.double().requires_grad_()
    yr = ema_forward(xr, reference)[0]
    expected = [yr, *torch.autograd.grad(yr, [xr, *reference.parameters()], g.double())]
    xc = x.clone().requires_grad_()
    with torch.autocast('cuda', enabled=precision == 'AMP'):
        y = ema_compiled.ema_forward_compiled(xc, ema)
    got = [y, *torch.autograd.grad(y, [xc, *ema.parameters()], g.to(y.dtype))]
    if ema_compiled._state['failed']:
        raise SystemExit(f'check_ema_cuda: the compile failed: {ema_compiled._state["failed"]}')
    names = ['output', 'd input'] + [f'd {n}' for n, _ in ema.named_parameters()]
    return {n: relative_error(a, b) for n, a, b in zip(names, got, expected)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--tree', type=Path, default=PROJECT / 'yolov5')
    p.add_argument('--batch', type=int, default=16)
    opt = p.parse_args(argv)
    sys.path.insert(0, str(opt.tree.resolve()))
    import torch
    if not torch.cuda.is_available():
        raise SystemExit('check_ema_cuda: no CUDA GPU here')
    device = torch.device('cuda', 0)
    print(f'EMA compiled vs float64 reference on {torch.cuda.get_device_name(device)}, torch {torch.__version__}, '
          f'batch {opt.batch}; relative L2 error (largest over output, input and parameter gradients)\n')
    print('| channels | size | precision | largest error | of | tolerance | ok |')
    print('|---|---|---|---|---|---|---|')
    ok = True
    for channels, size in SHAPES:
        for precision in ('float32', 'AMP'):
            errors = check(channels, size, opt.batch, precision, device)
            worst = max(errors, key=errors.get)
            passed = errors[worst] <= TOLERANCE[precision]
            ok &= passed
            print(f'| {channels} | {size} | {precision} | {errors[worst]:.2e} | {worst} | {TOLERANCE[precision]:g} | '
                  f'{"yes" if passed else "NO"} |')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
