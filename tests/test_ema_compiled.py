"""EMA's compiled training path (models/ema_compiled.py): when it is taken, that it computes the paper's EMA
(forward and gradients, against the oracle in test_models.py), and that a failed compile trains on."""
import pytest
import torch
from test_models import PaperEMA


class CudaLike:
    # what wanted() reads of a tensor, for a machine without a GPU
    is_cuda = True


@pytest.fixture
def compiled(yolo, monkeypatch):
    from models import ema_compiled
    monkeypatch.setitem(ema_compiled._state, 'failed', None)
    monkeypatch.delenv(ema_compiled.ENV, raising=False)
    return ema_compiled


def test_compiled_path_is_cuda_amp_training_only_and_can_be_switched_off(compiled, monkeypatch):
    assert not compiled.wanted(CudaLike())  # float32: no gain measured, autograd's path
    monkeypatch.setattr(compiled, 'amp_enabled', lambda: True)  # inside train.py's torch.autocast('cuda')
    assert compiled.wanted(CudaLike())
    assert not compiled.wanted(torch.zeros(1))  # CPU keeps the hand-written backward
    with torch.no_grad():
        assert not compiled.wanted(CudaLike())  # inference and export: autograd's path
    monkeypatch.setenv(compiled.ENV, '0')
    assert not compiled.wanted(CudaLike())


def test_a_failed_compile_warns_once_and_trains_on_through_autograd(compiled, monkeypatch):
    monkeypatch.setattr(compiled, 'amp_enabled', lambda: True)
    from models.ema_attention import EMA
    from models.ema_autograd import ema_forward

    def broken(x, ema):
        raise RuntimeError('no Triton here\nsecond line')
    monkeypatch.setitem(compiled._state, 'compiled', broken)
    ema, x = EMA(16, 4), torch.randn(1, 16, 5, 6)
    with pytest.warns(UserWarning, match='no Triton here'):
        y = compiled.ema_forward_compiled(x, ema)
    torch.testing.assert_close(y, ema_forward(x, ema)[0])
    assert compiled._state['failed'] == 'RuntimeError: no Triton here'
    assert not compiled.wanted(CudaLike())  # not tried again


@pytest.mark.slow
def test_compiled_path_matches_the_paper_equations_forward_and_backward(compiled, monkeypatch):
    # torch.compile on the CPU (Inductor's C++ kernels): the same graph the GPU compiles to Triton
    from models.ema_attention import EMA
    monkeypatch.setitem(compiled._state, 'compiled', None)
    for channels, size, factor in [(64, 20, 8), (96, 7, 4)]:
        torch.manual_seed(0)
        ours, ref = EMA(channels, factor), PaperEMA(channels, factor)
        with torch.no_grad():
            ours.gn.weight.normal_(), ours.gn.bias.normal_()
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(2, channels, size, size + 3, requires_grad=True)
        y_ref, y = ref(x), compiled.ema_forward_compiled(x, ours)
        assert compiled._state['failed'] is None
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
        g = torch.randn_like(y_ref)
        for a, b in zip(torch.autograd.grad(y, [x, *ours.parameters()], g),
                        torch.autograd.grad(y_ref, [x, *ref.parameters()], g)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_the_cuda_check_script_measures_errors_against_float64(compiled, monkeypatch):
    # scripts/check_ema_cuda.py runs on a GPU; its comparison is checked here on the CPU, and must see a wrong result
    import check_ema_cuda
    from models import ema_autograd
    monkeypatch.setitem(compiled._state, 'compiled', None)
    errors = check_ema_cuda.check(32, 6, 2, 'float32', 'cpu')
    assert set(errors) >= {'output', 'd input', 'd conv3x3.weight', 'd gn.bias'}
    assert max(errors.values()) < 1e-4
    real = ema_autograd.ema_forward
    monkeypatch.setitem(compiled._state, 'compiled', lambda x, ema: (real(x, ema)[0] * 1.01, None))
    assert check_ema_cuda.check(32, 6, 2, 'float32', 'cpu')['output'] > 5e-3
