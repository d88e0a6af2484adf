"""Deterministic CUDA training, checked on the CPU: v7.0's train.py runs with torch.use_deterministic_algorithms(True),
and on a GPU any op below stops the run ("... does not have a deterministic implementation"). Every aten op of a
training step (forward and backward) of every shipped YAML is recorded and none may be one of them. The GPU check
itself, two train.py runs compared bit for bit, is scripts/check_determinism.py (docs/results/cuda-determinism.md)."""
import subprocess

import pytest
import torch
from conftest import PROJECT, PY, SCRIPT_ENV
from torch.utils._python_dispatch import TorchDispatchMode
from test_models import SHIPPED

# ops that raise under deterministic algorithms on CUDA (torch.use_deterministic_algorithms' documentation)
NO_DETERMINISTIC_CUDA = {
    '_adaptive_avg_pool2d_backward', '_adaptive_avg_pool3d_backward', 'adaptive_max_pool2d_backward',
    'adaptive_max_pool3d_backward', 'avg_pool3d_backward', 'max_pool3d_with_indices_backward',
    'fractional_max_pool2d_backward', 'fractional_max_pool3d_backward', 'max_unpool2d', 'max_unpool3d',
    'upsample_linear1d_backward', 'upsample_bilinear2d_backward', 'upsample_bicubic2d_backward',
    'upsample_trilinear3d_backward', 'reflection_pad1d_backward', 'reflection_pad2d_backward',
    'reflection_pad3d_backward', 'replication_pad1d_backward', 'replication_pad2d_backward',
    'replication_pad3d_backward', 'grid_sampler_2d_backward', 'grid_sampler_3d_backward', 'histc', 'bincount',
    'kthvalue', 'median', 'nll_loss2d_forward', 'ctc_loss', '_ctc_loss_backward', 'embedding_bag'}


class OpNames(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def training_step_ops(model, img=64):
    x = torch.rand(2, 3, img, img)
    with OpNames() as ops:
        sum(o.float().square().mean() for o in model.train()(x)).backward()
    return ops.names


def test_the_recorder_sees_what_a_gpu_would_refuse(yolo):
    # the oracle can fail: the posts' CA pools with AdaptiveAvgPool2d((None, 1)), which CUDA refuses to run backward
    pool = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.AdaptiveAvgPool2d((None, 1)))
    x = torch.rand(1, 3, 8, 8)
    with OpNames() as ops:
        pool(x).sum().backward()
    assert '_adaptive_avg_pool2d_backward' in ops.names


@pytest.mark.parametrize('cfg', SHIPPED, ids=lambda p: p.stem)
def test_no_shipped_yaml_trains_through_an_op_without_a_deterministic_cuda_kernel(yolo, cfg):
    from models.yolo import Model
    torch.manual_seed(0)
    names = training_step_ops(Model(str(cfg), nc=3))
    assert 'convolution_backward' in names  # the recorder saw the backward
    assert not names & NO_DETERMINISTIC_CUDA, f'{cfg.stem}: {sorted(names & NO_DETERMINISTIC_CUDA)}'


@pytest.mark.slow
def test_check_determinism_trains_twice_and_compares(tree, tiny_data, tmp_path):
    # the GPU command's mechanics on the CPU: a model by name at another scale, two train.py runs, the table
    out = tmp_path / 'table.md'
    args = ['--device', 'cpu', '--models', 'yolov5n_ECA', '--tree', tree, '--data', tiny_data, '--img', 64,
            '--batch', 8, '--jobs', 1, '--project', tmp_path / 'runs', '--out', out]
    r = subprocess.run([PY, str(PROJECT / 'scripts' / 'check_determinism.py'), *map(str, args)], capture_output=True,
                       text=True, env=SCRIPT_ENV)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert '| yolov5n_ECA |' in out.read_text() and '| yes | identical | yes |' in out.read_text()
