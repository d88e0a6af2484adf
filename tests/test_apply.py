"""scripts/apply.py: the tree it builds, idempotency, refusals, --check and patch-failure errors."""
import shutil
import subprocess
from pathlib import Path

import git
import pytest
from conftest import PROJECT, run_apply

import apply


def series():
    return [p for p in (PROJECT / 'patches' / 'series').read_text().split('\n') if p and not p.startswith('#')]


def test_tree_history_is_baseline_overlay_then_one_commit_per_patch(tree):
    repo = git.Repo(tree)
    log = [c.summary for c in repo.iter_commits('HEAD', reverse=True)]
    patches = series()
    assert log[0] == 'YOLOv5 v7.0 baseline (pypi)'
    assert log[1].startswith('Add overlay files')
    assert log[2:] == [apply.patch_subject(PROJECT / 'patches' / p) for p in patches]
    assert repo.tags['upstream'].commit == next(repo.iter_commits('HEAD', reverse=True))
    assert 'PyPI yolov5==7.0.0' in repo.tags['upstream'].commit.message  # provenance stated
    changed = repo.git.diff('upstream', '--name-only').split()
    assert 'utils/general.py' in changed and 'utils/compat.py' in changed
    assert not repo.is_dirty(untracked_files=True)


def test_pypi_baseline_has_upstream_import_layout(tree):
    for f in ('train.py', 'val.py', 'utils/general.py', 'models/yolo.py', 'benchmarks.py'):
        text = (tree / f).read_text()
        assert 'from yolov5.' not in text and 'import yolov5' not in text, f
    assert not (tree / '__init__.py').exists() and not (tree / 'cli.py').exists()
    assert 'import val as validate' in (tree / 'train.py').read_text()
    # the wheel's val.py forced FP16 inputs on a float model on GPUs; upstream's line is restored
    assert 'half = cuda =' not in (tree / 'val.py').read_text()
    assert 'patches/pypi/val-half-on-cuda.patch' in git.Repo(tree).tags['upstream'].commit.message


def test_restore_import_layout_rewrites_every_form():
    src = ('from yolov5.utils.general import LOGGER\nimport yolov5.val as validate\n'
           '    from yolov5.models.common import DetectMultiBackend\nx = yolov5.export.run()\n'
           'from yolov5 import __version__\n# from yolov5.utils.general import *\nmy_yolov5.val = 1\n')
    out = apply.restore_import_layout(src)
    assert out == ('from utils.general import LOGGER\nimport val as validate\n'
                   '    from models.common import DetectMultiBackend\nx = export.run()\n'
                   "__version__ = '7.0.0'  # was: from yolov5 import __version__\n"
                   '# from utils.general import *\nmy_yolov5.val = 1\n')


def test_reapply_is_idempotent(tmp_path):
    dest = tmp_path / 'y'
    run_apply('--dest', dest)
    head = git.Repo(dest).head.commit.hexsha
    r = run_apply('--dest', dest)
    assert 'up to date' in r.stdout
    assert git.Repo(dest).head.commit.hexsha == head
    # a rebuild from scratch gives the very same commits (fixed identity and dates)
    shutil.rmtree(dest)
    run_apply('--dest', dest)
    assert git.Repo(dest).head.commit.hexsha == head


def test_refuses_to_destroy_uncommitted_edits(tmp_path):
    dest = tmp_path / 'y'
    run_apply('--dest', dest)
    edited = dest / 'train.py'
    edited.write_text(edited.read_text() + '\n# my experiment\n')
    (dest / 'runs').mkdir()
    (dest / 'runs' / 'keep.txt').write_text('results')
    r = run_apply('--dest', dest, '--overlay', tmp_path / 'other-overlay', check=False)  # any rebuild
    assert r.returncode == 2
    assert 'uncommitted changes' in r.stderr and '--force' in r.stderr
    assert edited.read_text().endswith('# my experiment\n') and (dest / 'runs' / 'keep.txt').exists()
    r = run_apply('--dest', dest, '--force')
    assert r.returncode == 0 and not edited.read_text().endswith('# my experiment\n')


def test_refuses_a_folder_it_did_not_build(tmp_path):
    dest = tmp_path / 'y'
    dest.mkdir()
    (dest / 'notes.txt').write_text('mine')
    r = run_apply('--dest', dest, check=False)
    assert r.returncode == 2 and 'not a tree built by apply.py' in r.stderr
    assert (dest / 'notes.txt').read_text() == 'mine'


def test_check_verifies_and_changes_nothing(tmp_path):
    dest = tmp_path / 'y'
    r = run_apply('--dest', dest, '--check')
    assert f'all {len(series())} patches apply' in r.stdout
    assert not dest.exists()


def _broken_patches(tmp_path):
    """A copy of patches/ whose last patch has a hunk that cannot match (context changed)."""
    patches = tmp_path / 'patches'
    shutil.copytree(PROJECT / 'patches', patches)
    bad = patches / 'zz-broken.patch'
    bad.write_text('Subject: A patch that no longer applies\nWhy: test\n---\n'
                   '--- a/utils/loss.py\n+++ b/utils/loss.py\n'
                   '@@ -3,2 +3,2 @@\n'
                   '-Loss functions\n+Loss functions (changed)\n """\n'
                   '@@ -10,3 +10,3 @@\n from utils.metrics import bbox_iou\n-THIS LINE IS NOT THERE\n+x\n'
                   ' from utils.torch_utils import de_parallel\n')
    with (patches / 'series').open('a') as f:
        f.write('zz-broken.patch\n')
    return patches


def test_failing_patch_names_patch_file_and_hunk_and_leaves_tree_alone(tmp_path):
    dest = tmp_path / 'y'
    run_apply('--dest', dest)
    head = git.Repo(dest).head.commit.hexsha
    patches = _broken_patches(tmp_path)
    for args in (('--check',), ()):
        r = run_apply('--dest', dest, '--patches', patches, *args, check=False)
        assert r.returncode == 2
        assert 'zz-broken.patch' in r.stderr and 'utils/loss.py' in r.stderr and 'hunk #2' in r.stderr, r.stderr
    assert git.Repo(dest).head.commit.hexsha == head  # untouched, not half-applied
    assert not git.Repo(dest).is_dirty(untracked_files=True)
    assert not list(tmp_path.glob('.apply-*'))  # no staging left behind


def test_git_source_refuses_a_repository_without_the_pinned_commit(tmp_path):
    other = tmp_path / 'not-yolov5'
    repo = git.Repo.init(other)
    (other / 'README.md').write_text('x')
    repo.index.add(['README.md'])
    repo.index.commit('unrelated')
    r = subprocess.run([apply.sys.executable, str(PROJECT / 'scripts' / 'apply.py'), '--source', 'git', '--repo',
                        str(other), '--dest', str(tmp_path / 'y'), '--cache', str(tmp_path / 'cache')],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert apply.PINNED_COMMIT in r.stderr and not (tmp_path / 'y').exists()


def test_every_patch_has_a_header_and_is_listed():
    names = series()
    on_disk = sorted(p.name for p in (PROJECT / 'patches').glob('*.patch'))
    assert sorted(names) == on_disk
    for name in names:
        text = (PROJECT / 'patches' / name).read_text()
        head = text.split('\n---\n', 1)[0]
        assert head.startswith('Subject: ') and '\nWhy: ' in head, name
