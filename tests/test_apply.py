"""scripts/apply.py: the tree it builds, idempotency, refusals, --check and patch-failure errors."""
import re
import shutil
import subprocess
from pathlib import Path

import git
import pytest
from conftest import HAVE_V70, PROJECT, SOURCE, run_apply

import apply


def series():
    return [p for p in (PROJECT / 'patches' / 'series').read_text().split('\n') if p and not p.startswith('#')]


def test_tree_history_is_baseline_overlay_then_one_commit_per_patch(tree):
    repo = git.Repo(tree)
    log = [c.summary for c in repo.iter_commits('HEAD', reverse=True)]
    patches = series()
    assert log[0] == f'YOLOv5 v7.0 baseline ({SOURCE})'
    assert log[1].startswith('Add overlay files')
    assert log[2:] == [apply.patch_subject(PROJECT / 'patches' / p) for p in patches]
    assert repo.tags['upstream'].commit == next(repo.iter_commits('HEAD', reverse=True))
    if HAVE_V70:  # the real thing: v7.0's very tree, and the commit message says where it came from
        assert repo.tags['upstream'].commit.tree.hexsha == apply.PINNED_TREE == 'c54a6d586927aea25e80574e1e54ea0534ef679d'
        assert f'Commit: {apply.PINNED_COMMIT} (tag v7.0)' in repo.tags['upstream'].commit.message
    else:
        assert 'PyPI yolov5==7.0.0' in repo.tags['upstream'].commit.message  # provenance stated
    changed = repo.git.diff('upstream', '--name-only').split()
    assert 'utils/general.py' in changed and 'utils/compat.py' in changed
    assert not repo.is_dirty(untracked_files=True)


@pytest.fixture(scope='module')
def pypi_tree(tmp_path_factory):
    """The tree built from the PyPI package, as `--source pypi` builds it (the wheel comes from PyPI once)."""
    dest = tmp_path_factory.mktemp('pypi') / 'yolov5'
    r = run_apply('--dest', dest, check=False, source='pypi')
    if r.returncode and 'could not download' in r.stderr:
        pytest.skip(f'PyPI unreachable: {r.stderr.strip()[-200:]}')
    assert r.returncode == 0, r.stderr
    # named, with what differs: a user never gets it by accident or without knowing
    assert 'warning: the PyPI package yolov5==7.0.0 is not YOLOv5 v7.0' in r.stdout and 'bbox_iou' in r.stdout
    return dest


def test_pypi_baseline_has_upstream_import_layout(pypi_tree):
    tree = pypi_tree
    for f in ('train.py', 'val.py', 'utils/general.py', 'models/yolo.py', 'benchmarks.py'):
        text = (tree / f).read_text()
        assert 'from yolov5.' not in text and 'import yolov5' not in text, f
    assert not (tree / '__init__.py').exists() and not (tree / 'cli.py').exists()
    assert 'import val as validate' in (tree / 'train.py').read_text()
    # the wheel's val.py forced FP16 inputs on a float model on GPUs; upstream's line is restored
    assert 'half = cuda =' not in (tree / 'val.py').read_text()
    assert 'patches/pypi/val-half-on-cuda.patch' in git.Repo(tree).tags['upstream'].commit.message
    assert 'Not v7.0: ' in git.Repo(tree).tags['upstream'].commit.message


def test_pypi_fixes_are_what_the_real_tree_already_has(pypi_tree, tree):
    # patches/pypi/ only restores v7.0's own lines: after it, those lines are the git tree's
    if not HAVE_V70:
        pytest.skip('needs the real v7.0 (../shared/upstream bundle) to compare with')
    for f in ('segment/train.py', 'segment/val.py'):
        calls = [re.sub(r'\s+', '', _main_block(t / f)) for t in (pypi_tree, tree)]
        assert calls[0] == calls[1] == 'opt=parse_opt()main(opt)', (f, calls)
    assert 'half = cuda =' not in (tree / 'val.py').read_text()


def _main_block(path):
    return re.split(r"if __name__ == ['\"]__main__['\"]:", Path(path).read_text())[-1].strip()


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


def test_auto_uses_git_only_and_says_how_to_get_v70(tmp_path):
    # a missing source is never silently replaced by the PyPI package
    r = subprocess.run([apply.sys.executable, str(PROJECT / 'scripts' / 'apply.py'), '--repo', str(tmp_path / 'nothing'),
                        '--dest', str(tmp_path / 'y'), '--cache', str(tmp_path / 'cache')], capture_output=True, text=True)
    assert r.returncode == 2 and not (tmp_path / 'y').exists()
    assert str(tmp_path / 'nothing') in r.stderr and '--repo' in r.stderr and '--source pypi' in r.stderr, r.stderr
    assert 'pypi' not in r.stdout  # no fallback happened


def test_a_source_whose_v70_commit_has_other_content_is_refused(tmp_path):
    # git replace makes the pinned hash resolve to another tree: the content check refuses it
    bundle = PROJECT.parent / 'shared' / 'upstream' / 'yolov5-v7.0.bundle'
    if not bundle.exists():
        pytest.skip('needs ../shared/upstream/yolov5-v7.0.bundle')
    forged = tmp_path / 'forged.git'
    repo = git.Repo.clone_from(str(bundle), forged, bare=True)
    env = {'GIT_AUTHOR_NAME': 'x', 'GIT_AUTHOR_EMAIL': 'x@x', 'GIT_COMMITTER_NAME': 'x', 'GIT_COMMITTER_EMAIL': 'x@x'}
    other_tree = repo.git.rev_parse(f'{apply.PINNED_COMMIT}~1^{{tree}}')
    fake = repo.git.commit_tree(other_tree, '-m', 'YOLOv5 v7.0 (not really)', env=env)
    repo.git.replace(apply.PINNED_COMMIT, fake)
    assert repo.git.rev_parse(f'{apply.PINNED_COMMIT}^{{tree}}') == other_tree
    cache = tmp_path / 'cache'
    mirror = cache / 'git' / (apply.hashlib.sha1(str(forged).encode()).hexdigest()[:12] + '.git')
    mirror.parent.mkdir(parents=True)
    shutil.copytree(forged, mirror)  # a tampered cache: the same as a tampered mirror
    r = subprocess.run([apply.sys.executable, str(PROJECT / 'scripts' / 'apply.py'), '--repo', str(forged),
                        '--dest', str(tmp_path / 'y'), '--cache', str(cache)], capture_output=True, text=True)
    assert r.returncode == 2 and apply.PINNED_TREE in r.stderr and 'refusing' in r.stderr, r.stderr
    assert not (tmp_path / 'y').exists()
