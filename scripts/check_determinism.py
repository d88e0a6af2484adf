#!/usr/bin/env python3
"""Train every shipped model YAML a few steps through the stock train.py, twice with the same seed, and check
that the two runs agree bit for bit: the same results.csv (losses and metrics) and the same trained weights.

    python scripts/check_determinism.py --device 0                   # every shipped YAML and yolov5s, on the GPU
    python scripts/check_determinism.py --device 0 --models yolov5s_CBAM yolov5s_EMA --jobs 4
    python scripts/check_determinism.py --device 0 --out docs/results/cuda-determinism.md

v7.0's train.py turns on torch.use_deterministic_algorithms(True): an op without a deterministic CUDA kernel
(adaptive pooling's backward, say) stops the run at its first step; such a run shows as an error with the
message. Runs are independent and run --jobs at a time (on one GPU they share it). Exit status 1 when any model
fails or differs between its two runs.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
MODELS = PROJECT / 'configs' / 'models'
LOSSES = ('train/box_loss', 'train/obj_loss', 'train/cls_loss')


def default_models() -> list[str]:
    return ['yolov5s'] + sorted(p.stem for p in MODELS.glob('*.yaml'))


def train(opt, name: str, attempt: int) -> dict:
    folder = opt.project / name / f'run{attempt}'
    from bench import resolve_cfg  # a path, a shipped YAML or upstream's by name, at any scale (yolov5n_EMA)
    cmd = [sys.executable, str(opt.tree / 'train.py'), '--cfg', str(resolve_cfg(name, opt.tree).resolve()), '--weights', '', '--data',
           str(opt.data), '--img', str(opt.img), '--batch', str(opt.batch), '--epochs', str(opt.epochs),
           '--device', opt.device, '--workers', str(opt.workers), '--seed', str(opt.seed), '--noplots',
           '--project', str(folder.parent), '--name', folder.name, '--exist-ok']
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f'{folder.name}.log', 'w') as log:
        rc = subprocess.call(cmd, cwd=opt.tree, stdout=log, stderr=subprocess.STDOUT)
    text = (folder.parent / f'{folder.name}.log').read_text(errors='replace')
    return dict(rc=rc, folder=folder, error=last_error(text) if rc else '')


def last_error(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    errors = [x for x in lines if 'Error' in x or 'error' in x]
    return (errors or lines or ['(no output)'])[-1][:300]


def results_rows(folder: Path) -> list[dict]:
    with open(folder / 'results.csv') as f:
        return [{k.strip(): v.strip() for k, v in row.items()} for row in csv.DictReader(f)]


def weights_difference(a: Path, b: Path) -> float:
    # largest |difference| over every tensor of the two last.pt (their 'model': the EMA weights train.py saves)
    from utils.safe_load import load_checkpoint
    sa = load_checkpoint(a / 'weights' / 'last.pt')['model'].float().state_dict()
    sb = load_checkpoint(b / 'weights' / 'last.pt')['model'].float().state_dict()
    if sa.keys() != sb.keys():
        return float('inf')
    return max(((sa[k].double() - sb[k].double()).abs().max().item() if sa[k].numel() else 0.0) for k in sa)


def check(opt, name: str) -> dict:
    runs = [train(opt, name, i) for i in (1, 2)]
    failed = next((r for r in runs if r['rc']), None)
    if failed:
        return dict(model=name, ok=False, losses='', same_csv='', weights='', error=failed['error'])
    rows = [results_rows(r['folder']) for r in runs]
    diff = weights_difference(runs[0]['folder'], runs[1]['folder'])
    losses = ', '.join(rows[0][-1][k] for k in LOSSES)
    same = rows[0] == rows[1]
    return dict(model=name, ok=same and diff == 0, losses=losses, same_csv='yes' if same else 'NO',
                weights='identical' if diff == 0 else f'max |diff| {diff:.3g}', error='')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', nargs='*', help='model YAML names or paths (default: yolov5s and every shipped YAML)')
    p.add_argument('--tree', type=Path, default=PROJECT / 'yolov5')
    p.add_argument('--data', type=Path, default=PROJECT / 'configs' / 'data' / 'bccd.yaml')
    p.add_argument('--img', type=int, default=320)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--device', default='0', help="train.py's --device ('0' the first GPU, 'cpu')")
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--jobs', type=int, default=4, help='runs at a time')
    p.add_argument('--project', type=Path, default=PROJECT / 'runs' / 'determinism')
    p.add_argument('--out', type=Path, help='also write the table (markdown, with its provenance) here')
    opt = p.parse_args(argv)
    opt.tree, opt.data, opt.project = opt.tree.resolve(), opt.data.resolve(), opt.project.resolve()
    if not (opt.tree / 'train.py').exists():
        raise SystemExit(f'check_determinism: {opt.tree} is not a built tree; run `make apply` first')
    if not opt.data.exists():
        raise SystemExit(f'check_determinism: no data YAML {opt.data} (for BCCD: `make data`)')
    sys.path.insert(0, str(opt.tree))
    sys.path.insert(0, str(PROJECT / 'scripts'))
    names = opt.models or default_models()
    from tqdm import tqdm
    with ThreadPoolExecutor(opt.jobs) as pool:
        futures = [pool.submit(check, opt, n) for n in names]
        results = [f.result() for f in tqdm(futures, desc='models', unit='model')]
    text = table(opt, results, argv)
    print(text)
    if opt.out:
        opt.out.parent.mkdir(parents=True, exist_ok=True)
        opt.out.write_text(text)
    return 0 if all(r['ok'] for r in results) else 1


def table(opt, results, argv) -> str:
    from ablation.records import provenance
    prov = provenance(opt.tree, opt.device)
    args = ' '.join(sys.argv[1:] if argv is None else argv)
    lines = [f"`python scripts/check_determinism.py {args}`: commit {prov['commit'][:12]}, {prov['date']}, "
             f"{prov['machine']}, {prov['device']}, torch {prov['torch']}", '',
             f'Each model trained twice by the stock train.py ({opt.epochs} epoch(s), {opt.img} px, batch {opt.batch}, '
             f'seed {opt.seed}, from scratch, {opt.data.stem}), deterministic algorithms on as v7.0 sets them.', '',
             '| model | train losses (box, obj, cls), last epoch | results.csv identical | last.pt weights | '
             'deterministic | error |', '|---|---|---|---|---|---|']
    lines += [f"| {r['model']} | {r['losses']} | {r['same_csv']} | {r['weights']} | {'yes' if r['ok'] else 'NO'} | "
              f"{r['error']} |" for r in results]
    return '\n'.join(lines) + '\n'


if __name__ == '__main__':
    sys.exit(main())
