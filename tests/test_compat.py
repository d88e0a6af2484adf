"""overlay/utils compat and offline helpers, as imported from the built tree."""
import numpy as np
import pytest


@pytest.fixture(scope='module', autouse=True)
def modules(yolo):
    """The overlay's utils.compat and utils.offline, imported from the built tree."""
    global compat, offline
    from utils import compat, offline


def test_trapezoid_matches_the_integral():
    x = np.linspace(0, 1, 101)
    assert compat.trapezoid(x ** 2, x) == pytest.approx(1 / 3, abs=1e-4)


def test_parse_version_orders_local_builds_and_tolerates_junk():
    assert compat.parse_version('2.14.1+cu130') >= compat.parse_version('1.12.0')
    assert compat.parse_version('not-a-version') < compat.parse_version('0.0.1')


def test_text_size_is_width_and_height_from_origin():
    from PIL import ImageFont
    font = ImageFont.truetype(str(offline.local_font('Arial.ttf', '/nonexistent')), 20)
    w, h = compat.text_size(font, 'RBC 0.91')
    assert 40 < w < 120 and 10 < h < 30
    assert compat.text_size(font, 'RBC 0.91 RBC 0.91')[0] > w


def test_unmet_requirements_reads_files_and_alternatives(tmp_path):
    req = tmp_path / 'requirements.txt'
    req.write_text('numpy>=1.0  # comment\nopencv-python>=4.1.1\nipython\nsurely-not-installed-pkg>=1\n'
                   'numpy<1.0\n# pycocotools\n')
    assert offline.unmet_requirements(req) == ['surely-not-installed-pkg>=1', 'numpy<1.0']
    assert offline.unmet_requirements(req, exclude=('numpy', 'surely-not-installed-pkg')) == []
    assert offline.unmet_requirements(tmp_path / 'missing.txt') == []


def test_check_requirements_warns_and_never_installs(caplog, monkeypatch):
    import logging
    import subprocess
    monkeypatch.setattr(subprocess, 'check_output', lambda *a, **k: pytest.fail('tried to run pip'))
    # 'yolov5' does not propagate to root (YOLOv5's logging config) and earlier in-process tests may have
    # quieted it (scripts/ablate.py): listen on it directly, at WARNING, whatever ran before
    logger = logging.getLogger('yolov5')
    caplog.set_level(logging.WARNING, logger='yolov5')
    monkeypatch.setattr(logger, 'handlers', [*logger.handlers, caplog.handler])  # undone after the test
    assert offline.check_requirements('surely-not-installed-pkg') is False
    assert "pip install 'surely-not-installed-pkg'" in caplog.text


def test_local_font_never_downloads(tmp_path):
    assert offline.local_font('Arial.ttf', tmp_path).name == 'DejaVuSans.ttf'
    (tmp_path / 'Arial.ttf').write_bytes(b'x')
    assert offline.local_font('Arial.ttf', tmp_path) == tmp_path / 'Arial.ttf'


def test_load_checkpoint_loads_pickled_modules(tmp_path):
    import torch
    f = tmp_path / 'ckpt.pt'
    torch.save({'model': torch.nn.Conv2d(3, 4, 1), 'epoch': 3}, f)
    with pytest.raises(Exception):
        torch.load(f)  # today's default refuses YOLOv5-style checkpoints
    ckpt = compat.load_checkpoint(f)
    assert isinstance(ckpt['model'], torch.nn.Conv2d) and ckpt['epoch'] == 3


def test_amp_forward_allclose_runs_on_cpu():
    import torch

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)

        def forward(self, x):
            return (self.conv(x).flatten(1),)

    assert offline.amp_forward_allclose(Head(), imgsz=32) is True


def test_onnx_export_kwargs_select_the_torchscript_exporter():
    assert compat.onnx_export_kwargs() == {'dynamo': False}


def test_no_script_uses_the_deprecated_cuda_amp_api(tree):
    # torch.cuda.amp warns on every training step (train, segment/train, classify/train and val)
    from conftest import tree_lines
    uses = tree_lines(tree, r'torch\.cuda\.amp|from torch\.cuda import amp', skip=('compat.py',))
    assert not uses, uses


def test_notebook_init_runs_without_ipython(tree):
    # upstream's CI step `python -c "import utils; utils.notebook_init()"` (also the end of benchmarks.py)
    import subprocess
    from conftest import PY, SCRIPT_ENV
    no_ipython = 'import sys; sys.modules["IPython"] = None'  # import IPython raises, installed or not
    r = subprocess.run([PY, '-c', f'{no_ipython}; import utils; utils.notebook_init()'], cwd=tree, env=SCRIPT_ENV,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and 'Setup complete' in r.stdout, r.stderr[-3000:]
