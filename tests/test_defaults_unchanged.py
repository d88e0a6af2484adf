"""With no new option set, the patched tree trains exactly like upstream v7.0."""
import json
import subprocess

import git
import pytest
from conftest import PROJECT, PY

PROBE = PROJECT / 'tests' / 'loss_probe.py'


@pytest.fixture(scope='module')
def baseline(tree, tmp_path_factory):
    """The unpatched v7.0 files (tag `upstream` of the built tree), checked out on their own."""
    path = tmp_path_factory.mktemp('baseline') / 'v7.0'
    git.Repo(tree).git.worktree('add', '--detach', str(path), 'upstream')
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
    assert patched == upstream
    assert float.fromhex(patched['loss']) > 0


def test_stock_yaml_builds_the_same_model_as_upstream(tree, baseline, tmp_path):
    import torch
    probe(tree, tmp_path / 'patched.pt')  # each tree initialises its own model with the same seed
    probe(baseline, tmp_path / 'upstream.pt')
    a, b = (torch.load(tmp_path / f, weights_only=True) for f in ('patched.pt', 'upstream.pt'))
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
