"""Released weights by name offline (utils/local_weights.py, patch weights-local-first, scripts/copy_weights.py)."""
import subprocess

import pytest
from conftest import PROJECT, PY

SHARED = PROJECT.parent / 'shared' / 'weights' / 'yolov5n.pt'


@pytest.fixture
def downloads(yolo, monkeypatch):
    from utils import downloads, local_weights
    monkeypatch.setattr(local_weights, 'reachable', lambda url: False)  # offline, deterministically
    monkeypatch.setattr(downloads, 'safe_download', lambda *a, **k: pytest.fail('tried to download'))
    return downloads


def test_a_released_name_comes_from_the_weights_folder(downloads, tmp_path, monkeypatch):
    if not SHARED.exists():
        pytest.skip('needs ../shared/weights/yolov5n.pt')
    (tmp_path / 'yolov5n.pt').symlink_to(SHARED)
    monkeypatch.setenv('YOLOV5_WEIGHTS_DIR', str(tmp_path))
    assert downloads.attempt_download('yolov5n.pt') == str(tmp_path / 'yolov5n.pt')


def test_a_copy_that_is_not_the_release_is_refused(downloads, tmp_path, monkeypatch):
    (tmp_path / 'yolov5n.pt').write_bytes(b'not the release')
    monkeypatch.setenv('YOLOV5_WEIGHTS_DIR', str(tmp_path))
    with pytest.raises(ValueError, match=r"is not upstream's yolov5n.pt: sha256 [0-9a-f]{64}, expected 4f180cf2"):
        downloads.attempt_download('yolov5n.pt')


def test_offline_without_a_copy_says_where_to_put_it_at_once(downloads, tmp_path, monkeypatch):
    monkeypatch.setenv('YOLOV5_WEIGHTS_DIR', str(tmp_path / 'w'))
    with pytest.raises(FileNotFoundError, match=rf"yolov5s.pt is not here.*put upstream's yolov5s.pt in {tmp_path}/w"):
        downloads.attempt_download('yolov5s.pt')
    assert downloads.attempt_download(str(tmp_path / 'mine.pt')) == str(tmp_path / 'mine.pt')  # a path: as before


def test_copy_weights_checks_the_release(tmp_path):
    fake = tmp_path / 'src' / 'yolov5n.pt'
    fake.parent.mkdir()
    fake.write_bytes(b'tampered')
    r = subprocess.run([PY, str(PROJECT / 'scripts' / 'copy_weights.py'), str(fake), '--to', str(tmp_path / 'w')],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "is not upstream's yolov5n.pt" in r.stderr and not (tmp_path / 'w' / 'yolov5n.pt').exists()
    if SHARED.exists():
        r = subprocess.run([PY, str(PROJECT / 'scripts' / 'copy_weights.py'), str(SHARED), '--to', str(tmp_path / 'w')],
                           capture_output=True, text=True)
        assert r.returncode == 0 and 'sha256 checked' in r.stdout and (tmp_path / 'w' / 'yolov5n.pt').stat().st_size
