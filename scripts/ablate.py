#!/usr/bin/env python3
"""Ablation runner: every variant x seed through the stock train.py, then val.py on best.pt (test split).

    python scripts/ablate.py run configs/ablations/smoke.yaml              # resumable; writes the report at the end
    python scripts/ablate.py run configs/ablations/bccd-gpu.yaml --shard 2/4   # a deterministic quarter of the runs
    python scripts/ablate.py report configs/ablations/smoke.yaml           # report from finished runs' records
    python scripts/ablate.py report ABL.yaml --records other/records ...   # merge records of other machines/jobs
    python scripts/ablate.py check configs/ablations/bccd-gpu.yaml         # validate every variant, train nothing

An ablation YAML holds shared settings and a list of variants:

    name: smoke                   # output folder runs/ablate/<name> (or `out:`, or --out)
    data: tiny                    # a data YAML, or `tiny` for a generated synthetic dataset
    img: 64
    epochs: 1
    batch: 8
    weights: ''                   # from scratch, or a .pt / a released name (yolov5n.pt): moved into each model
    seeds: [0, 1, 2]
    device: cpu                   # '', 'cpu', '0', or a list [0, 1, 2, 3]: runs are spread over the GPUs
    hyp: [hyp.scratch-low.yaml, configs/hyps/scratch-short.yaml]  # base files, layered (default: hyp.scratch-low)
    scale: n                      # optional depth/width of every model: n s m l x (default: as in the YAML)
    baseline: baseline            # the row differences are taken against (default: the first variant)
    paired_init: true             # from scratch: seed k of every variant starts from the baseline's seed-k weights
    variants:
      - {name: baseline, cfg: yolov5n.yaml}
      - {name: eiou, cfg: yolov5n.yaml, hyp_file: configs/hyps/eiou.yaml}   # a variant layer on the base
      - {name: wiou, cfg: yolov5n.yaml, hyp: {iou_type: WIoUv3}}            # or keys written here
      - {name: ema, cfg: yolov5n_EMA.yaml}                                 # any shipped YAML, any scale, by name
      - {name: ema-by-name, cfg: yolov5n_EMA.yaml, transfer: name}         # --weights moved as v7.0 did

Every run leaves a record (<out>/records/<variant>-s<seed>.json): settings, metrics, per-epoch curve, commit,
machine, device and torch version; `report` builds results.md, results.csv and two figures from records only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from ablation_config import (MEASUREMENT_ENV, PROJECT, AblationError, Run, load_ablation, parse_shard, plan, resolve,
                             shard_of, variant_dir, variant_hyp_files, variant_model, write_variant_files)
from ablation_records import build_record, git_commit, provenance, read_records, record_path, write_record

TRANSFER_LINE = 'Transferred '


# ------------------------------------------------------------------------------------------------ preparing
def import_tree(tree: Path):
    if not (tree / 'train.py').exists():
        raise AblationError(f'{tree} is not a built tree; run `make apply` first')
    if str(tree) not in sys.path:
        sys.path.insert(0, str(tree))
    import logging
    import models.yolo  # noqa: F401  (sets up YOLOv5's logger, quieted below)
    logging.getLogger('yolov5').setLevel(logging.ERROR)


def variant_hyp(abl: dict, v: dict) -> dict:
    """Base files, the variant's files, then its `hyp:` keys, checked as train.py checks them."""
    from utils.hyp_files import load_hyp
    files = variant_hyp_files(abl, v)
    try:
        return load_hyp({**load_hyp(','.join(map(str, files))), **(v.get('hyp') or {})})
    except ValueError as e:
        raise AblationError(f'variant {v["name"]}: {e}') from None


def check_variants(abl: dict, nc: int = 2) -> dict:
    """Build every variant's model and check its hyp before anything trains; errors name the variant.
    Writes each variant's model.yaml and hyp.yaml; returns {variant: model size}."""
    import_tree(abl['tree'])
    from models.yolo import Model
    sizes = {}
    for v in abl['variants']:
        hyp = variant_hyp(abl, v)
        cfg, _ = write_variant_files(abl, v, hyp)
        try:
            sizes[v['name']] = model_size(Model(str(cfg), nc=nc, anchors=hyp.get('anchors')))
        except Exception as e:
            raise AblationError(f'variant {v["name"]}: {type(e).__name__}: {e}') from None
    return sizes


def model_size(model) -> dict:
    # as YOLOv5's model summary counts them; GFLOPs at 640 px
    from bench import gflops
    return {'layers': len(list(model.modules())), 'params': sum(p.numel() for p in model.parameters()),
            'gflops': round(gflops(model, next(model.parameters()).device), 2)}


def data_yaml(abl: dict) -> Path:
    if abl['data'] == 'tiny':
        from make_tiny_dataset import make_dataset
        target = abl['out'] / 'tiny'
        return target / 'data.yaml' if (target / 'data.yaml').exists() else make_dataset(target)
    path = resolve(abl['data'])
    if not path.is_file():
        raise AblationError(f'data YAML {path} not found (for BCCD run `make data` first)')
    return path


def number_of_classes(data: Path) -> int:
    from utils.general import check_dataset
    return int(check_dataset(str(data))['nc'])


def build_label_caches(data: Path) -> None:
    """Write YOLOv5's labels/*.cache once, here: runs started together would race to write the same files."""
    from utils.dataloaders import LoadImagesAndLabels
    from utils.general import check_dataset
    d = check_dataset(str(data))
    for split in ('train', 'val', 'test'):
        if d.get(split):
            LoadImagesAndLabels(d[split], img_size=64, batch_size=1, prefix=f'{split}: ')


def init_weights(abl: dict, seed: int, nc: int) -> Path:
    """The baseline model's initial weights for `seed` (built once, reused by every variant and shard): train.py
    moves them into each variant's model by architecture, so paired runs start from the same shared layers."""
    import torch
    from models.yolo import Model
    path = abl['out'] / 'init' / f'{abl["baseline"]}-s{seed}.pt'
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        base = next(v for v in abl['variants'] if v['name'] == abl['baseline'])
        hyp = variant_hyp(abl, base)
        torch.manual_seed(seed)
        model = Model(variant_model(abl, base), ch=3, nc=nc, anchors=hyp.get('anchors'))
        tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
        torch.save({'model': model, 'epoch': -1, 'note': f'initial weights of {abl["baseline"]}, seed {seed}'}, tmp)
        tmp.replace(path)
    return path


def weights_argument(weights: str) -> str:
    """train.py's --weights: a path relative to the project, or a released name (yolov5n.pt) that train.py finds in
    weights/ (or downloads); '' trains from scratch."""
    if not weights:
        return ''
    path = resolve(weights)
    return str(path) if path.exists() or '/' in str(weights) else str(weights)


def weights_digest(path: Path) -> str:
    # sha256 of the tensors (pickled files of equal weights differ byte for byte): equal digests, paired runs
    from utils.compat import load_checkpoint  # the tree's safe loader (import_tree ran in prepare)
    h = hashlib.sha256()
    for k, v in load_checkpoint(path)['model'].state_dict().items():
        h.update(k.encode() + v.contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ running
def run_state(run: Run) -> str:
    """'done' (val.json), 'trained' (needs val), 'interrupted' (resumable last.pt) or 'new'."""
    if (run.folder / 'val.json').exists():
        return 'done'
    weights = run.folder / 'train' / 'weights'
    if (run.folder / 'train.json').exists() and (weights / 'best.pt').exists():
        return 'trained'
    return 'interrupted' if (weights / 'last.pt').exists() else 'new'


def train_command(run: Run, abl: dict, data: Path, device: str, weights: str) -> list[str]:
    folder = variant_dir(abl, run.variant)
    return [sys.executable, str(abl['tree'] / 'train.py'), '--data', str(data), '--cfg', str(folder / 'model.yaml'),
            '--hyp', str(folder / 'hyp.yaml'), '--img', str(abl['img']), '--epochs', str(abl['epochs']),
            '--batch', str(abl['batch']), '--weights', weights, '--seed', str(run.seed), '--device', device,
            '--workers', str(abl['workers']), '--project', str(run.folder), '--name', 'train', '--exist-ok',
            '--transfer', run.variant.get('transfer', 'structure'), *map(str, abl['args'])]


def resume_command(run: Run, abl: dict) -> list[str]:
    last = run.folder / 'train' / 'weights' / 'last.pt'
    return [sys.executable, str(abl['tree'] / 'train.py'), '--resume', str(last)]


def val_command(run: Run, abl: dict, data: Path, device: str) -> list[str]:
    return [sys.executable, str(PROJECT / 'scripts' / 'val_metrics.py'), str(run.folder / 'val.json'),
            '--weights', str(run.folder / 'train' / 'weights' / 'best.pt'), '--data', str(data), '--img',
            str(abl['img']), '--task', 'test', '--device', device, '--batch-size', str(abl['batch']),
            '--project', str(run.folder), '--name', 'val', '--exist-ok']


def train_attempts(run: Run) -> list[dict]:
    """Wall-clock training attempts of a run; one killed mid-way ends when its log was last written."""
    f = run.folder / 'attempts.json'
    attempts = json.loads(f.read_text()) if f.exists() else []
    for a in attempts:
        if a.get('end') is None:
            a['end'], a['killed'] = (run.folder / 'train.log').stat().st_mtime, True
    return attempts


def execute(run: Run, abl: dict, data: Path, device: str, weights: str, log) -> None:
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'WANDB_MODE': 'disabled', **MEASUREMENT_ENV}
    run.folder.mkdir(parents=True, exist_ok=True)
    state = run_state(run)
    if state in ('new', 'interrupted'):
        attempts = train_attempts(run) if state == 'interrupted' else []
        cmd = resume_command(run, abl) if state == 'interrupted' else train_command(run, abl, data, device, weights)
        attempts.append({'start': time.time(), 'end': None, 'resume': state == 'interrupted'})
        (run.folder / 'attempts.json').write_text(json.dumps(attempts))
        _call(cmd, abl['tree'], env, run.folder / 'train.log', append=state == 'interrupted')
        attempts[-1]['end'] = time.time()
        (run.folder / 'attempts.json').write_text(json.dumps(attempts))
        (run.folder / 'train.json').write_text(json.dumps({'seconds': sum(a['end'] - a['start'] for a in attempts),
                                                           'attempts': len(attempts)}))
    if state != 'done':
        _call(val_command(run, abl, data, device), abl['tree'], env, run.folder / 'val.log')
    test = json.loads((run.folder / 'val.json').read_text())
    log(f'{run.name}: mAP50 {test["mAP50"]:.3f}, mAP50-95 {test["mAP50-95"]:.3f}')


def _call(cmd, cwd, env, log_file: Path, append=False) -> None:
    with open(log_file, 'a' if append else 'w') as f:
        f.write('$ ' + ' '.join(cmd) + '\n')
        f.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        text = log_file.read_text(errors='replace')
        raise RuntimeError(f'{Path(cmd[1]).name} failed ({proc.returncode}); last lines of {log_file}:\n'
                           + '\n'.join(text.splitlines()[-15:]))


def finish_record(run: Run, abl: dict, sizes: dict, init: Path | None, prov: dict) -> None:
    """The run's self-contained record, once val.json exists."""
    train = json.loads((run.folder / 'train.json').read_text())
    hyp_file = variant_dir(abl, run.variant) / 'hyp.yaml'
    log = (run.folder / 'train.log').read_text(errors='replace')
    transfer = next((line.strip() for line in log.splitlines() if TRANSFER_LINE in line), None)
    train.update(hyp=yaml.safe_load(hyp_file.read_text()), init=init.name if init else None,
                 init_sha256=weights_digest(init) if init else None, transfer=transfer)
    test = json.loads((run.folder / 'val.json').read_text())
    write_record(record_path(abl, run), build_record(abl, run, sizes[run.variant['name']], test, train, prov))


def devices_of(abl: dict) -> list[str]:
    d = abl['device']
    return [str(x) for x in d] if isinstance(d, list) else [str(d)]


def prepare(abl: dict, seeds) -> tuple[Path, dict, dict]:
    """Check every variant, the data and the initial weights: (data YAML, model sizes, {seed: init file or None})."""
    data = data_yaml(abl)
    import_tree(abl['tree'])
    nc = number_of_classes(data)
    sizes = check_variants(abl, nc)  # fail fast, before any training
    paired = abl['paired_init'] and not abl['weights']
    inits = {s: init_weights(abl, s, nc) if paired else None for s in seeds}
    return data, sizes, inits


def run_ablation(path: Path, out: Path | None = None, shard: str | None = None) -> int:
    from tqdm import tqdm
    abl = load_ablation(path, out)
    runs = shard_of(plan(abl), parse_shard(shard))
    data, sizes, inits = prepare(abl, sorted({r.seed for r in runs}))
    if len(devices_of(abl)) > 1:
        build_label_caches(data)
    todo = [r for r in runs if run_state(r) != 'done' or not record_path(abl, r).exists()]
    part = f' (shard {shard}: {len(runs)} of {len(plan(abl))})' if shard else ''
    print(f'ablate: {abl["name"]}{part}: {len(runs)} runs ({len(abl["variants"])} variants x {len(abl["seeds"])} '
          f'seeds), {len(runs) - len(todo)} already done; output {abl["out"]}', flush=True)
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc='ablation', unit='run', dynamic_ncols=True)
    jobs, errors, lock = queue.Queue(), [], threading.Lock()
    for r in todo:
        jobs.put(r)

    def worker(device):  # one per device entry: runs are spread over the GPUs, one run per entry at a time
        prov = provenance(abl['tree'], device)
        while True:
            try:
                r = jobs.get_nowait()
            except queue.Empty:
                return
            with lock:
                bar.set_postfix_str(f'{r.name} on {device or "auto"}')
            try:
                init = inits[r.seed]
                weights = str(init) if init else weights_argument(abl['weights'])
                execute(r, abl, data, device, weights, lambda msg: bar.write(f'ablate: {msg}'))
                finish_record(r, abl, sizes, init, prov)
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
    write_report(abl, command=f'python scripts/ablate.py run {path}' + (f' --shard {shard}' if shard else ''))
    if errors:
        print(f'ablate: {len(errors)} run(s) failed; fix and re-run to continue:\n' + '\n'.join(errors),
              file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------------------------- report
def write_report(abl: dict, extra=(), command: str = '') -> None:
    from ablation_report import markdown, plot_epochs, plot_variants, runs_table, short_commit
    records, notes = read_records(abl, extra)
    out = abl['out']
    for n in notes:
        print(f'ablate: {n}')
    if not records:
        print(f'ablate: no finished runs in {out} yet; nothing to report')
        return
    out.mkdir(parents=True, exist_ok=True)
    runs = runs_table(records)
    runs.to_csv(out / 'results.csv', index=False)
    header = (f'Report: `{command}` at commit {short_commit(git_commit(PROJECT))}; records in `records/` (one per run, '
              f'with the commit, machine, device and torch version that produced it).')
    (out / 'results.md').write_text(markdown(abl, runs, notes).replace('\n\n', f'\n\n{header}\n\n', 1))
    plot_variants(abl, runs, out)
    plot_epochs(abl, records, out)
    print(f'ablate: report in {out}: results.md, results.csv, map_per_variant.png, map_per_epoch.png')
    print((out / 'results.md').read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('command', choices=('run', 'report', 'check'))
    p.add_argument('ablation', type=Path)
    p.add_argument('--out', type=Path, help='output folder (default: the YAML\'s `out`, else runs/ablate/<name>)')
    p.add_argument('--shard', help='run: only share i of n of the runs, e.g. 2/4 (deterministic round robin)')
    p.add_argument('--records', type=Path, nargs='+', default=[],
                   help='report: also merge the records found under these folders (other machines, array jobs)')
    opt = p.parse_args(argv)
    try:
        if opt.command == 'run':
            return run_ablation(opt.ablation, opt.out, opt.shard)
        abl = load_ablation(opt.ablation, opt.out)
        if opt.command == 'check':
            check_variants(abl)
            print(f'ablate: {abl["name"]}: {len(abl["variants"])} variants valid, {len(plan(abl))} runs')
            return 0
        write_report(abl, opt.records, command=' '.join(['python scripts/ablate.py', *map(str, argv or sys.argv[1:])]))
        return 0
    except AblationError as e:
        print(f'ablate: error: {e}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
