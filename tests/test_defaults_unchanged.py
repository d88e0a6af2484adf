"""With no new option set, the patched tree trains exactly like upstream v7.0.

Two references: upstream's own files (tag `upstream`), for the loss and its gradients layer by layer; and the
compat-only commit (v7.0 + the fixes it needs to run at all on today's stack), for a whole train.py run.
"""
import json
import subprocess

import git
import pytest
from conftest import PROJECT, PY, SCRIPT_ENV

PROBE = PROJECT / 'tests' / 'loss_probe.py'
TRAIN_PROBE = PROJECT / 'tests' / 'train_probe.py'


@pytest.fixture(scope='module')
def baseline(tree, tmp_path_factory):
    """The unpatched v7.0 files (tag `upstream` of the built tree), checked out on their own."""
    path = tmp_path_factory.mktemp('baseline') / 'v7.0'
    git.Repo(tree).git.worktree('add', '--detach', str(path), 'upstream')
    yield path
    git.Repo(tree).git.worktree('remove', '--force', str(path))


def compat_only_commit(repo):
    """The last commit of the compat patches: v7.0 as it runs on today's stack, nothing of ours beside."""
    commits = [c for c in repo.iter_commits('HEAD') if 'Patch: patches/compat-' in c.message]
    assert commits, 'no compat patch in the tree'
    return commits[0].hexsha


@pytest.fixture(scope='module')
def compat_only(tree, tmp_path_factory):
    path = tmp_path_factory.mktemp('compat') / 'v7.0-compat'
    git.Repo(tree).git.worktree('add', '--detach', str(path), compat_only_commit(git.Repo(tree)))
    yield path
    git.Repo(tree).git.worktree('remove', '--force', str(path))


def probe(tree, weights, overrides=None):
    args = [PY, str(PROBE), str(tree), str(weights)] + ([json.dumps(overrides)] if overrides else [])
    r = subprocess.run(args, capture_output=True, text=True, cwd=tree)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_loss_and_gradients_are_bit_identical_to_upstream(tree, baseline, tmp_path):
    weights = tmp_path / 'init.pt'
    patched = probe(tree, weights)
    upstream = probe(baseline, weights)
    assert patched['loss'] == upstream['loss'] and patched['items'] == upstream['items']
    assert list(patched['grads']) == list(upstream['grads'])
    differ = [k for k in patched['grads'] if patched['grads'][k] != upstream['grads'][k]]
    assert not differ, f'gradients differ from upstream in {len(differ)} tensors, first: {differ[:5]}'
    assert float.fromhex(patched['loss']) > 0 and len(patched['grads']) > 100


def test_stock_yaml_builds_the_same_model_as_upstream(tree, baseline, tmp_path):
    import torch
    probe(tree, tmp_path / 'patched.pt')  # each tree initialises its own model with the same seed
    probe(baseline, tmp_path / 'upstream.pt')
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ('patched.pt', 'upstream.pt'))
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def train_probe(tree, data, out):
    r = subprocess.run([PY, str(TRAIN_PROBE), str(tree), str(data), str(out)], capture_output=True, text=True,
                       cwd=tree, env={**SCRIPT_ENV, 'YOLOV5_NMS_TIME_LIMIT': ''})
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_train_py_with_defaults_runs_exactly_as_the_compat_only_tree(tree, compat_only, tiny_data, tmp_path):
    # data order and augmentation (the default seed), losses per batch, the hyp as loaded, metrics after NMS,
    # every trained and EMA weight, the EMA ramp and the NMS time limit: all of it the same, bit for bit
    ours = train_probe(tree, tiny_data, tmp_path / 'ours')
    theirs = train_probe(compat_only, tiny_data, tmp_path / 'compat')
    for key in ('batches', 'hyp.yaml', 'results.csv', 'ema_decay', 'nms_kept'):
        assert ours[key] == theirs[key], f'{key} differs from the compat-only tree:\n{ours[key]}\n{theirs[key]}'
    differ = [k for k in theirs['last.pt'] if ours['last.pt'].get(k) != theirs['last.pt'][k]]
    assert list(ours['last.pt']) == list(theirs['last.pt']) and not differ, differ[:5]
    assert len(ours['batches']) == 4 and 0 < sum(ours['nms_kept']) and ours['nms_kept'][-1] == 0  # limit reached
