"""scripts/bench.py runs as `make bench` runs it and prints complete tables (it times nothing that is asserted)."""
import math
import re
import subprocess

from conftest import PROJECT, PY, SCRIPT_ENV


def bench(tree, *args):
    r = subprocess.run([PY, str(PROJECT / 'scripts' / 'bench.py'), '--tree', str(tree), '--repeats', '1', '--rounds',
                        '1', *args], capture_output=True, text=True, env=SCRIPT_ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def table(text, first_column):
    rows = [[c.strip() for c in line.strip('|').split('|')] for line in text.splitlines() if line.startswith('| ')]
    header = next(r for r in rows if r[0] == first_column)
    return [dict(zip(header, r)) for r in rows if r is not header and r[0] != first_column]


def test_model_table_has_every_requested_model_against_yolov5s(tree):
    out = bench(tree, 'models', '--models', 'yolov5s_EMA', 'yolov5s_MobileNetV3-Small', '--img', '64', '--batch', '1')
    rows = {r['model']: r for r in table(out, 'model')}
    assert list(rows) == ['yolov5s', 'yolov5s_EMA', 'yolov5s_MobileNetV3-Small']
    assert rows['yolov5s']['x yolov5s'] == '1.00' and rows['yolov5s']['params'] == '7.24M'
    assert rows['yolov5s']['fused x yolov5s'] == '1.00'
    assert rows['yolov5s_EMA']['params'] == '7.29M'
    assert float(rows['yolov5s_EMA']['GFLOPs@640']) > float(rows['yolov5s']['GFLOPs@640'])  # EMA's convs counted
    assert rows['yolov5s']['BatchNorms (fused)'] == '57 (0)'
    assert rows['yolov5s_MobileNetV3-Small']['BatchNorms (fused)'].endswith(' (0)')  # its blocks fuse too
    for r in rows.values():
        assert all(float(r[k]) > 0 for k in ('train step ms', 'infer ms/img', 'fused infer ms/img'))


def test_loss_table_has_every_shipped_loss_variant_against_ciou(tree):
    out = bench(tree, 'losses', '--loss-img', '128', '--loss-batch', '2')
    rows = {r['variant']: r for r in table(out, 'variant')}
    shipped = {p.stem for p in (PROJECT / 'configs' / 'hyps').glob('*.yaml')}
    expected = shipped - {'scratch-short', 'ema-off', 'ema-fast'}  # same loss as upstream: training recipe only
    assert set(rows) == expected | {'CIoU (upstream)'}
    assert rows['CIoU (upstream)']['x CIoU'] == '1.00'
    assert rows['siou']['iou_type'] == 'SIoU' and rows['varifocal']['cls/obj'] == 'varifocal/varifocal'
    for r in rows.values():
        assert all(math.isfinite(float(r[k])) and float(r[k]) > 0 for k in ('loss', 'call ms', 'box term ms'))
    assert rows['eiou']['loss'] != rows['CIoU (upstream)']['loss']  # each row really ran its own loss
    assert re.search(r'\(\d+ positives\)', out)


def test_bench_names_the_bad_model(tree):
    r = subprocess.run([PY, str(PROJECT / 'scripts' / 'bench.py'), 'models', '--tree', str(tree), '--models', 'nope'],
                       capture_output=True, text=True, env=SCRIPT_ENV)
    assert r.returncode != 0 and "unknown model 'nope'" in r.stderr and 'yolov5s_EMA' in r.stderr
