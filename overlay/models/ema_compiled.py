# EMA's training path on CUDA, compiled. Through autograd the module is ~30 small kernels forward and as many
# backward; a GPU training step was launch-bound on them (yolov5s_EMA 1.26x yolov5s in float32, 1.62x under AMP on
# an H100). torch.compile (Inductor, Triton kernels) fuses ema_forward's elementwise work and reductions into a
# few kernels. Measured on an H200 (docs/bench/models-h200.md): under AMP, as train.py trains on a GPU, yolov5s_EMA's
# step went from 1.33x to 1.04x yolov5s; in float32 it did not gain (1.42x against 1.27x): float32 keeps autograd.
# Compiled per input shape (dynamic shapes fail in Inductor's lowering of it): a model's EMAs times the full and
# last batch, a few seconds each, kept in Inductor's on-disk cache for later runs. YOLOV5_EMA_COMPILE=0 keeps
# autograd's path; a compile that fails falls back to it once, with a warning naming the error.
import os
import warnings

import torch

from models.ema_autograd import ema_forward

ENV = 'YOLOV5_EMA_COMPILE'
_state = {'compiled': None, 'failed': None}


def wanted(x):
    # CUDA training under AMP only: CPU keeps its hand-written backward; float32, inference, export and tracing keep
    # autograd's path
    return (x.is_cuda and torch.is_grad_enabled() and amp_enabled() and os.environ.get(ENV, '1') != '0'
            and _state['failed'] is None and hasattr(torch, 'compile') and not torch.jit.is_tracing()
            and not torch.jit.is_scripting() and not _is_compiling())


def amp_enabled():
    try:
        return torch.is_autocast_enabled('cuda')
    except TypeError:  # torch < 2.4: no device argument, CUDA's state
        return torch.is_autocast_enabled()


def _is_compiling():
    compiler = getattr(torch, 'compiler', None)
    return bool(compiler and getattr(compiler, 'is_compiling', lambda: False)())


def compiled_forward():
    if _state['compiled'] is None:
        raise_recompile_limit(64)  # the default (8) is below the EMAs x batch shapes of one model
        _state['compiled'] = torch.compile(ema_forward, dynamic=False)
    return _state['compiled']


def raise_recompile_limit(limit):
    config = torch._dynamo.config
    name = next(n for n in ('recompile_limit', 'cache_size_limit') if hasattr(config, n))  # renamed in torch 2.6
    setattr(config, name, max(getattr(config, name), limit))


def ema_forward_compiled(x, ema):
    try:
        return compiled_forward()(x, ema)[0]
    except Exception as e:  # no Triton, an unsupported torch: train on, on autograd's path
        _state['failed'] = f'{type(e).__name__}: {e}'.splitlines()[0]
        warnings.warn(f'EMA: torch.compile failed ({_state["failed"]}); using autograd for EMA from now on '
                      f'({ENV}=0 skips the attempt)')
        return ema_forward(x, ema)[0]
