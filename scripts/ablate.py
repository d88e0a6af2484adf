#!/usr/bin/env python3
"""Ablation runner: every variant x seed through the stock train.py, then val.py on best.pt (test split).

    python scripts/ablate.py run configs/ablations/smoke.yaml      # resumable; writes the report at the end
    python scripts/ablate.py report configs/ablations/smoke.yaml   # report from finished runs only
    python scripts/ablate.py check configs/ablations/bccd-gpu.yaml # validate every variant, train nothing

An ablation YAML holds shared settings and a list of variants:

    name: smoke                   # output folder runs/ablate/<name> (or `out:`)
    data: tiny                    # a data YAML, or `tiny` for a generated synthetic dataset
    img: 64
    epochs: 1
    batch: 8
    weights: ''                   # from scratch, or a .pt
    seeds: [0, 1, 2]
    device: cpu                   # '', 'cpu', '0', or a list [0, 1, 2, 3]: runs are spread over the GPUs
    hyp: configs/hyps/hyp.scratch-short.yaml  # base hyp file (default: the tree's hyp.scratch-low.yaml)
    scale: n                      # optional depth/width of every model: n s m l x (default: as in the YAML)
    baseline: baseline            # the row deltas are taken against (default: the first variant)
    variants:
      - {name: baseline, cfg: yolov5n.yaml}
      - {name: eiou, cfg: yolov5n.yaml, hyp: {iou_type: EIoU}}       # hyp overrides
      - {name: ema, cfg: configs/models/yolov5s_EMA.yaml, hyp_file: configs/hyps/hyp.varifocal.yaml}
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
SCALES = {'n': (0.33, 0.25), 's': (0.33, 0.50), 'm': (0.67, 0.75), 'l': (1.0, 1.0), 'x': (1.33, 1.25)}
SHARED_KEYS = {'name', 'out', 'data', 'img', 'epochs', 'batch', 'weights', 'seeds', 'device', 'hyp', 'scale',
               'baseline', 'variants', 'workers', 'tree', 'args'}
VARIANT_KEYS = {'name', 'cfg', 'hyp', 'hyp_file', 'scale'}
ALL_LINE = re.compile(r'^\s+all\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$', re.M)
SPEED_LINE = re.compile(r'Speed: ([\d.]+)ms pre-process, ([\d.]+)ms inference, ([\d.]+)ms NMS per image')
SUMMARY_LINE = re.compile(r'summary: (\d+) layers, (\d+) parameters, \d+ gradients(?:, ([\d.]+) GFLOPs)?')


class AblationError(ValueError):
    """A bad ablation file or variant; the message names it."""


@dataclass
class Run:
    variant: dict
    seed: int
    folder: Path  # runs/ablate/<name>/runs/<variant>-s<seed>

    @property
    def name(self):
        return self.folder.name


# ------------------------------------------------------------------------------------------------ loading
def load_ablation(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AblationError(f'ablation file {path} not found; presets: '
                            f'{", ".join(sorted(p.name for p in (PROJECT / "configs" / "ablations").glob("*.yaml")))}')
    abl = yaml.safe_load(path.read_text()) or {}
    unknown = set(abl) - SHARED_KEYS
    if unknown:
        raise AblationError(f'{path.name}: unknown keys {sorted(unknown)}; valid: {sorted(SHARED_KEYS)}')
    if not abl.get('variants'):
        raise AblationError(f'{path.name}: no variants')
    abl.setdefault('name', path.stem)
    abl['out'] = PROJECT / abl.get('out', f'runs/ablate/{abl["name"]}')
    abl['tree'] = PROJECT / abl.get('tree', 'yolov5')
    for k, v in (('img', 640), ('epochs', 100), ('batch', 16), ('weights', ''), ('seeds', [0]), ('device', ''),
                 ('workers', 8), ('args', [])):
        abl.setdefault(k, v)
    abl['seeds'] = abl['seeds'] if isinstance(abl['seeds'], list) else [abl['seeds']]
    names = [v.get('name') for v in abl['variants']]
    for i, v in enumerate(abl['variants']):
        label = v.get('name') or f'#{i}'
        if not v.get('name') or not re.fullmatch(r'[\w.+-]+', str(v['name'])):
            raise AblationError(f'variant {label}: needs a `name` of letters, digits, _ . + -')
        if names.count(v['name']) > 1:
            raise AblationError(f'variant {label}: name used twice')
        bad = set(v) - VARIANT_KEYS
        if bad:
            raise AblationError(f'variant {label}: unknown keys {sorted(bad)}; valid: {sorted(VARIANT_KEYS)}')
        if not v.get('cfg'):
            raise AblationError(f'variant {label}: needs `cfg` (a model YAML)')
    abl.setdefault('baseline', names[0])
    if abl['baseline'] not in names:
        raise AblationError(f'baseline {abl["baseline"]!r} is not a variant; variants: {names}')
    return abl


def resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else (PROJECT / p)


def variant_files(abl: dict, v: dict) -> tuple[Path, Path]:
    """Write the variant's model YAML and hyp YAML into the ablation folder; return their paths."""
    folder = abl['out'] / 'variants' / v['name']
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = find_cfg(abl, v)
    cfg = yaml.safe_load(cfg_path.read_text())
    scale = v.get('scale', abl.get('scale'))
    if scale:
        if scale not in SCALES:
            raise AblationError(f'variant {v["name"]}: scale {scale!r} is not one of {list(SCALES)}')
        cfg['depth_multiple'], cfg['width_multiple'] = SCALES[scale]
    hyp_path = resolve(v.get('hyp_file') or abl.get('hyp') or abl['tree'] / 'data' / 'hyps' / 'hyp.scratch-low.yaml')
    if not hyp_path.is_file():
        raise AblationError(f'variant {v["name"]}: hyp file {hyp_path} not found')
    hyp = {**yaml.safe_load(hyp_path.read_text()), **(v.get('hyp') or {})}
    (folder / 'model.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    (folder / 'hyp.yaml').write_text(yaml.safe_dump(hyp, sort_keys=False))
    return folder / 'model.yaml', folder / 'hyp.yaml'


def find_cfg(abl: dict, v: dict) -> Path:
    for candidate in (resolve(v['cfg']), PROJECT / 'configs' / 'models' / v['cfg'], abl['tree'] / 'models' / v['cfg']):
        if candidate.is_file():
            return candidate
    raise AblationError(f'variant {v["name"]}: model YAML {v["cfg"]!r} not found (paths are relative to the project, '
                        'or a name in configs/models/ or yolov5/models/)')


def check_variants(abl: dict) -> None:
    """Build every variant's model and validate its hyp before anything trains; errors name the variant."""
    tree = abl['tree']
    if not (tree / 'train.py').exists():
        raise AblationError(f'{tree} is not a built tree; run `make apply` first')
    sys.path.insert(0, str(tree))
    import logging
    from models.yolo import Model
    from utils.loss_options import validate_loss_hyp
    logging.getLogger('yolov5').setLevel(logging.ERROR)  # after the import, which sets it up: no layer tables
    for v in abl['variants']:
        cfg, hyp = variant_files(abl, v)
        try:
            hyp_dict = yaml.safe_load(hyp.read_text())
            missing = [k for k in ('lr0', 'box', 'cls', 'obj', 'anchor_t') if k not in hyp_dict]
            if missing:
                raise ValueError(f'hyp is missing {missing}')
            validate_loss_hyp(hyp_dict)
            Model(str(cfg), nc=2)
        except Exception as e:
            raise AblationError(f'variant {v["name"]}: {type(e).__name__}: {e}') from None


def data_yaml(abl: dict) -> Path:
    if abl.get('data', 'tiny') == 'tiny':
        sys.path.insert(0, str(PROJECT / 'scripts'))
        from make_tiny_dataset import make_dataset
        target = abl['out'] / 'tiny'
        return target / 'data.yaml' if (target / 'data.yaml').exists() else make_dataset(target)
    path = resolve(abl['data'])
    if not path.is_file():
        raise AblationError(f'data YAML {path} not found (for BCCD run `make data` first)')
    return path


def build_label_caches(data: Path) -> None:
    """Write YOLOv5's labels/*.cache once, here: runs started together would race to write the same files."""
    from utils.dataloaders import LoadImagesAndLabels
    from utils.general import check_dataset
    d = check_dataset(str(data))
    for split in ('train', 'val', 'test'):
        if d.get(split):
            LoadImagesAndLabels(d[split], img_size=64, batch_size=1, prefix=f'{split}: ')


def plan(abl: dict) -> list[Run]:
    return [Run(v, s, abl['out'] / 'runs' / f'{v["name"]}-s{s}') for v in abl['variants'] for s in abl['seeds']]


# ------------------------------------------------------------------------------------------------ running
def run_state(run: Run) -> str:
    """'done' (val.json), 'trained' (needs val), 'interrupted' (resumable last.pt) or 'new'."""
    if (run.folder / 'val.json').exists():
        return 'done'
    last, best = run.folder / 'train' / 'weights' / 'last.pt', run.folder / 'train' / 'weights' / 'best.pt'
    if (run.folder / 'train.json').exists() and best.exists():
        return 'trained'
    return 'interrupted' if last.exists() else 'new'


def execute(run: Run, abl: dict, data: Path, device: str, log) -> None:
    tree, env = abl['tree'], {**os.environ, 'PYTHONUNBUFFERED': '1', 'WANDB_MODE': 'disabled'}
    run.folder.mkdir(parents=True, exist_ok=True)
    state = run_state(run)
    if state in ('new', 'interrupted'):
        cfg, hyp = abl['out'] / 'variants' / run.variant['name'] / 'model.yaml', \
            abl['out'] / 'variants' / run.variant['name'] / 'hyp.yaml'
        if state == 'interrupted':
            cmd = [sys.executable, str(tree / 'train.py'), '--resume', str(run.folder / 'train' / 'weights' / 'last.pt')]
        else:
            cmd = [sys.executable, str(tree / 'train.py'), '--data', str(data), '--cfg', str(cfg), '--hyp', str(hyp),
                   '--img', str(abl['img']), '--epochs', str(abl['epochs']), '--batch', str(abl['batch']),
                   '--weights', str(abl['weights']), '--seed', str(run.seed), '--device', device,
                   '--workers', str(abl['workers']), '--project', str(run.folder), '--name', 'train', '--exist-ok',
                   *map(str, abl['args'])]
        t0 = time.time()
        _call(cmd, tree, env, run.folder / 'train.log', append=state == 'interrupted')
        m = SUMMARY_LINE.search((run.folder / 'train.log').read_text())  # the unfused model, as built
        (run.folder / 'train.json').write_text(json.dumps({  # a resumed run counts the resumed part only
            'seconds': time.time() - t0, 'resumed': state == 'interrupted', 'layers': int(m.group(1)) if m else None,
            'params': int(m.group(2)) if m else None, 'gflops': float(m.group(3)) if m and m.group(3) else None}))
    cmd = [sys.executable, str(tree / 'val.py'), '--weights', str(run.folder / 'train' / 'weights' / 'best.pt'),
           '--data', str(data), '--img', str(abl['img']), '--task', 'test', '--device', device,
           '--batch-size', str(abl['batch']), '--project', str(run.folder), '--name', 'val', '--exist-ok']
    text = _call(cmd, tree, env, run.folder / 'val.log')
    m, s = ALL_LINE.search(text), SPEED_LINE.search(text)
    if not m:
        raise RuntimeError(f'{run.name}: no "all" line in val.py output (see {run.folder / "val.log"})')
    images, instances, p, r, map50, map5095 = m.groups()
    (run.folder / 'val.json').write_text(json.dumps({
        'images': int(images), 'instances': int(instances), 'P': float(p), 'R': float(r), 'mAP50': float(map50),
        'mAP50-95': float(map5095), 'infer_ms': float(s.group(2)) if s else None, 'val_line': m.group(0).strip()}))
    log(f'{run.name}: mAP50 {map50}, mAP50-95 {map5095}')


def _call(cmd, cwd, env, log_file: Path, append=False) -> str:
    with open(log_file, 'a' if append else 'w') as f:
        f.write('$ ' + ' '.join(cmd) + '\n')
        f.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    text = log_file.read_text()
    if proc.returncode:
        raise RuntimeError(f'{" ".join(cmd[1:3])} failed ({proc.returncode}); last lines of {log_file}:\n'
                           + '\n'.join(text.splitlines()[-15:]))
    return text


def devices_of(abl: dict) -> list[str]:
    d = abl['device']
    return [str(x) for x in d] if isinstance(d, list) else [str(d)]


def run_ablation(path: Path) -> int:
    from tqdm import tqdm
    abl = load_ablation(path)
    check_variants(abl)  # fail fast, before any training
    data = data_yaml(abl)
    if len(devices_of(abl)) > 1:
        build_label_caches(data)
    runs = plan(abl)
    todo = [r for r in runs if run_state(r) != 'done']
    print(f'ablate: {abl["name"]}: {len(runs)} runs ({len(abl["variants"])} variants x {len(abl["seeds"])} seeds), '
          f'{len(runs) - len(todo)} already done; output {abl["out"]}', flush=True)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc='ablation', unit='run', dynamic_ncols=True)
    jobs, errors, lock = queue.Queue(), [], threading.Lock()
    for r in todo:
        jobs.put(r)

    def worker(device):  # one per device: runs are spread over the GPUs, one run per GPU at a time
        while True:
            try:
                r = jobs.get_nowait()
            except queue.Empty:
                return
            with lock:
                bar.set_postfix_str(f'{r.name} on {device or "auto"}')
            try:
                execute(r, abl, data, device, lambda msg: bar.write(f'ablate: {msg}'))
            except Exception as e:
                with lock:
                    errors.append(f'{r.name}: {e}')
                bar.write(f'ablate: FAILED {r.name}: {e}')
            with lock:
                bar.update(1)

    threads = [threading.Thread(target=worker, args=(d,)) for d in devices_of(abl)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    write_report(abl)
    if errors:
        print(f'ablate: {len(errors)} run(s) failed; fix and re-run to continue:\n' + '\n'.join(errors), file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------------------- report
def collect(abl: dict) -> list[dict]:
    rows = []
    for r in plan(abl):
        if run_state(r) != 'done':
            continue
        val = json.loads((r.folder / 'val.json').read_text())
        train = json.loads((r.folder / 'train.json').read_text()) if (r.folder / 'train.json').exists() else {}
        rows.append({'variant': r.variant['name'], 'seed': r.seed, 'cfg': r.variant['cfg'],
                     'params': train.get('params'), 'gflops': train.get('gflops'), 'P': val['P'], 'R': val['R'],
                     'mAP50': val['mAP50'], 'mAP50-95': val['mAP50-95'], 'train_s': train.get('seconds'),
                     'infer_ms': val.get('infer_ms'), 'epochs_csv': str(r.folder / 'train' / 'results.csv')})
    return rows


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(rows: list[dict], variants: list[str], baseline: str) -> list[dict]:
    """One row per variant (in ablation order): mean and std over seeds, and the change against the baseline."""
    out = []
    for name in variants:
        rs = [r for r in rows if r['variant'] == name]
        if not rs:
            continue
        row = {'variant': name, 'seeds': len(rs), 'params': rs[0]['params'], 'gflops': rs[0]['gflops']}
        for k in ('P', 'R', 'mAP50', 'mAP50-95', 'train_s', 'infer_ms'):
            row[k], row[k + '_std'] = mean_std([r[k] for r in rs])
        out.append(row)
    base = next((r for r in out if r['variant'] == baseline), None)
    for row in out:
        for k in ('mAP50', 'mAP50-95'):
            row['d_' + k] = row[k] - base[k] if base and row[k] is not None and base[k] is not None else None
    return out


def fmt(mean, std, digits=3):
    return '-' if mean is None else f'{mean:.{digits}f} ± {std:.{digits}f}'


def markdown(summary: list[dict], abl: dict) -> str:
    lines = [f'# Ablation: {abl["name"]}', '',
             f'data {abl.get("data", "tiny")}, {abl["img"]} px, {abl["epochs"]} epochs, batch {abl["batch"]}, '
             f'weights {abl["weights"] or "none (from scratch)"}, seeds {abl["seeds"]}. Metrics on the test split '
             f'(val.py on best.pt), mean ± standard deviation over seeds; Δ against `{abl["baseline"]}`.', '',
             '| variant | seeds | params | GFLOPs | P | R | mAP50 | mAP50-95 | Δ mAP50 | Δ mAP50-95 | train time | '
             'inference ms/img |', '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in summary:
        def delta(k):
            return '-' if r['d_' + k] is None else f'{r["d_" + k]:+.3f}'
        size = f"{r['params'] / 1e6:.2f}M | {r['gflops'] or 0:.1f}" if r['params'] else '- | -'
        train = '-' if r['train_s'] is None else fmt(r['train_s'] / 60, r['train_s_std'] / 60, 1) + ' min'
        lines.append(f"| {r['variant']} | {r['seeds']} | {size} | {fmt(r['P'], r['P_std'])} | {fmt(r['R'], r['R_std'])} | "
                     f"{fmt(r['mAP50'], r['mAP50_std'])} | {fmt(r['mAP50-95'], r['mAP50-95_std'])} | {delta('mAP50')} | "
                     f"{delta('mAP50-95')} | {train} | {fmt(r['infer_ms'], r['infer_ms_std'], 1)} |")
    lines += ['', 'A difference smaller than the standard deviations of the two rows is not evidence of a gain.', '']
    return '\n'.join(lines)


def plot(rows: list[dict], summary: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import pandas as pd

    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(summary) + 2), 4))
    x = range(len(summary))
    ax.bar(x, [r['mAP50-95'] for r in summary], yerr=[r['mAP50-95_std'] for r in summary], capsize=4,
           color=['tab:gray' if i == 0 else 'tab:blue' for i in x])
    ax.set_xticks(list(x), [r['variant'] for r in summary], rotation=30, ha='right')
    ax.set_ylabel('mAP50-95 (test split)')
    ax.set_title('mAP50-95 per variant\n(mean ± std over seeds)')
    fig.tight_layout()
    fig.savefig(out / 'map_per_variant.png', dpi=150)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in summary:
        curves = []
        for r in rows:
            if r['variant'] == s['variant'] and Path(r['epochs_csv']).exists():
                df = pd.read_csv(r['epochs_csv'])
                df.columns = [c.strip() for c in df.columns]
                curves.append(df['metrics/mAP_0.5:0.95'].to_numpy())
        if curves:
            n = min(len(c) for c in curves)
            mean = sum(c[:n] for c in curves) / len(curves)
            line, = ax.plot(range(1, n + 1), mean, label=s['variant'], marker='o' if n < 10 else None)
            if len(curves) > 1:
                lo, hi = [min(c[i] for c in curves) for i in range(n)], [max(c[i] for c in curves) for i in range(n)]
                ax.fill_between(range(1, n + 1), lo, hi, alpha=0.15, color=line.get_color())
    ax.set_xlabel('epoch')
    ax.set_ylabel('mAP50-95 (val split)')
    ax.set_title('mAP50-95 per epoch (mean over seeds, band = min-max)')
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / 'map_per_epoch.png', dpi=150)
    plt.close(fig)


def write_report(abl: dict) -> None:
    import csv
    rows = collect(abl)
    out = abl['out']
    out.mkdir(parents=True, exist_ok=True)
    if not rows:
        print(f'ablate: no finished runs in {out} yet; nothing to report')
        return
    with open(out / 'results.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != 'epochs_csv'], extrasaction='ignore')
        w.writeheader()
        w.writerows(rows)
    summary = summarize(rows, [v['name'] for v in abl['variants']], abl['baseline'])
    (out / 'results.md').write_text(markdown(summary, abl))
    plot(rows, summary, out)
    print(f'ablate: report in {out}: results.csv, results.md, map_per_variant.png, map_per_epoch.png')
    print((out / 'results.md').read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('command', choices=('run', 'report', 'check'))
    p.add_argument('ablation', type=Path)
    opt = p.parse_args(argv)
    try:
        if opt.command == 'run':
            return run_ablation(opt.ablation)
        abl = load_ablation(opt.ablation)
        if opt.command == 'check':
            check_variants(abl)
            print(f'ablate: {abl["name"]}: {len(abl["variants"])} variants valid, {len(plan(abl))} runs')
            return 0
        write_report(abl)
        return 0
    except AblationError as e:
        print(f'ablate: error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
