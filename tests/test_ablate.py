"""scripts/ablate.py: the smoke ablation end to end, resuming, fail-fast validation and the report maths."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import PROJECT, PY

import ablate


def write_ablation(tmp_path, tree, **over):
    abl = yaml.safe_load((PROJECT / 'configs' / 'ablations' / 'smoke.yaml').read_text())
    abl.update(out=str(tmp_path / 'abl'), tree=str(tree), **over)
    path = tmp_path / 'abl.yaml'
    path.write_text(yaml.safe_dump(abl))
    return path


def ablate_cli(*args, **kw):
    return subprocess.run([PY, str(PROJECT / 'scripts' / 'ablate.py'), *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''}, **kw)


def test_smoke_ablation_end_to_end_and_nothing_trained_twice(tree, tmp_path):
    path = write_ablation(tmp_path, tree)
    r = ablate_cli('run', path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / 'abl'
    for f in ('results.csv', 'results.md', 'map_per_variant.png', 'map_per_epoch.png'):
        assert (out / f).stat().st_size > 0, f
    rows = list(csv.DictReader(open(out / 'results.csv')))
    assert [(r['variant'], r['seed']) for r in rows] == [('baseline', '0'), ('eiou', '0')]
    for row in rows:  # values are val.py's own "all" line, not invented
        val_log = (out / 'runs' / f"{row['variant']}-s0" / 'val.log').read_text()
        p, rr, m50, m = re.search(r'^\s+all\s+\d+\s+\d+\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)', val_log, re.M).groups()
        assert (float(row['P']), float(row['R']), float(row['mAP50']), float(row['mAP50-95'])) == \
            (float(p), float(rr), float(m50), float(m))
        assert int(row['params']) > 1e6 and float(row['train_s']) > 0
    md = (out / 'results.md').read_text()
    assert '| baseline | 1 |' in md and '| eiou | 1 |' in md and 'Δ mAP50-95' in md
    # re-running trains nothing: every run is done
    logs = {p: p.stat().st_mtime_ns for p in out.glob('runs/*/train.log')}
    (out / 'runs' / 'eiou-s0' / 'val.json').unlink()  # as if killed during validation
    r = ablate_cli('run', path)
    assert r.returncode == 0 and '1 already done' in r.stdout
    assert {p: p.stat().st_mtime_ns for p in out.glob('runs/*/train.log')} == logs  # no training again
    assert (out / 'runs' / 'eiou-s0' / 'val.json').exists()
    # the report alone rebuilds from finished runs
    md = (out / 'results.md').read_text()
    (out / 'results.md').unlink()
    assert ablate_cli('report', path).returncode == 0 and (out / 'results.md').read_text() == md


def test_killed_ablation_resumes_the_interrupted_run(tree, tmp_path):
    path = write_ablation(tmp_path, tree, epochs=3, img=96)
    out = tmp_path / 'abl'
    p = subprocess.Popen([PY, str(PROJECT / 'scripts' / 'ablate.py'), 'run', str(path)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''})
    last = out / 'runs' / 'eiou-s0' / 'train' / 'weights' / 'last.pt'
    deadline, size = time.time() + 600, -1
    while p.poll() is None and time.time() < deadline:  # second run has its first checkpoint
        if last.exists() and last.stat().st_size == size > 0:
            break
        size = last.stat().st_size if last.exists() else -1
        time.sleep(0.25)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert ablate.run_state(ablate.Run({}, 0, out / 'runs' / 'baseline-s0')) == 'done'
    assert ablate.run_state(ablate.Run({}, 0, out / 'runs' / 'eiou-s0')) == 'interrupted'
    baseline_log = (out / 'runs' / 'baseline-s0' / 'train.log').stat().st_mtime_ns
    r = ablate_cli('run', path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / 'runs' / 'baseline-s0' / 'train.log').stat().st_mtime_ns == baseline_log
    log = (out / 'runs' / 'eiou-s0' / 'train.log').read_text()
    assert '--resume' in log
    rows = (out / 'runs' / 'eiou-s0' / 'train' / 'results.csv').read_text().splitlines()[1:]
    epochs = [int(x.split(',')[0]) for x in rows]
    assert epochs == sorted(set(epochs)) and epochs[-1] == 2  # every epoch once


@pytest.mark.parametrize('variant,message', [
    ({'name': 'bad-loss', 'cfg': 'yolov5n.yaml', 'hyp': {'iou_type': 'EIOU2'}}, "variant bad-loss: .*iou_type='EIOU2'"),
    ({'name': 'bad-yaml', 'cfg': 'no-such-model.yaml'}, "variant bad-yaml: model YAML 'no-such-model.yaml' not found"),
    ({'name': 'bad-ema', 'cfg': 'configs/models/yolov5s_EMA.yaml', 'scale': 'n', 'hyp': {}},
     r'variant bad-ema: .*layer 18 \(EMA\).*64 input channels divisible by factor 6'),
])
def test_invalid_variant_fails_before_any_training(tree, tmp_path, variant, message):
    if variant['name'] == 'bad-ema':  # a pasted YAML with an EMA factor that does not divide the channels
        cfg = yaml.safe_load((PROJECT / 'configs' / 'models' / 'yolov5s_EMA.yaml').read_text())
        cfg['head'][8][3] = [256, 6]
        (tmp_path / 'ema6.yaml').write_text(yaml.safe_dump(cfg))
        variant['cfg'] = str(tmp_path / 'ema6.yaml')
    path = write_ablation(tmp_path, tree, variants=[{'name': 'baseline', 'cfg': 'yolov5n.yaml'}, variant])
    r = ablate_cli('run', path)
    assert r.returncode == 2 and re.search(message, r.stderr), r.stderr
    assert not (tmp_path / 'abl' / 'runs').exists()  # nothing trained


def test_report_means_stds_and_deltas_from_hand_made_results(tmp_path):
    abl = {'name': 'hand', 'out': tmp_path, 'variants': [{'name': 'base', 'cfg': 'a.yaml'}, {'name': 'new', 'cfg': 'b.yaml'}],
           'seeds': [0, 1, 2], 'baseline': 'base', 'img': 320, 'epochs': 3, 'batch': 8, 'weights': '', 'data': 'x'}
    maps = {'base': [0.30, 0.32, 0.34], 'new': [0.35, 0.36, 0.40]}
    for name, values in maps.items():
        for seed, v in enumerate(values):
            run = tmp_path / 'runs' / f'{name}-s{seed}'
            run.mkdir(parents=True)
            (run / 'val.json').write_text(json.dumps({'P': 0.5, 'R': 0.4 + seed / 10, 'mAP50': 2 * v, 'mAP50-95': v,
                                                      'infer_ms': 1.0}))
            (run / 'train.json').write_text(json.dumps({'seconds': 60.0 * (seed + 1), 'params': 1000, 'gflops': 1.0}))
    summary = ablate.summarize(ablate.collect(abl), ['base', 'new'], 'base')
    base, new = summary
    assert base['mAP50-95'] == pytest.approx(0.32) and base['mAP50-95_std'] == pytest.approx(0.02)
    assert new['mAP50-95'] == pytest.approx(0.37) and new['mAP50-95_std'] == pytest.approx(0.026458, abs=1e-6)
    assert new['d_mAP50-95'] == pytest.approx(0.05) and new['d_mAP50'] == pytest.approx(0.10)
    assert base['d_mAP50-95'] == 0 and new['R'] == pytest.approx(0.5) and new['train_s'] == pytest.approx(120)
    ablate.write_report(abl)
    md = (tmp_path / 'results.md').read_text()
    assert '| new | 3 | 0.00M | 1.0 | 0.500 ± 0.000 | 0.500 ± 0.100 | 0.740 ± 0.053 | 0.370 ± 0.026 | +0.100 | +0.050 |' in md
    assert (tmp_path / 'map_per_variant.png').exists()


def test_presets_are_valid(tree, tmp_path, monkeypatch):
    for preset in sorted((PROJECT / 'configs' / 'ablations').glob('*.yaml')):
        abl = ablate.load_ablation(preset)
        abl['out'], abl['tree'] = tmp_path / preset.stem, tree
        ablate.check_variants(abl)
