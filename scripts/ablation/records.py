"""Run records: one self-contained JSON per finished run (variant, seed, settings, metrics, per-epoch curve and where
it ran), so that records from several machines or cluster jobs merge into one report."""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .config import PROJECT, AblationError, settings

RECORD_VERSION = 1
EPOCH_COLUMNS = {'metrics/precision': 'P', 'metrics/recall': 'R', 'metrics/mAP_0.5': 'mAP50',
                 'metrics/mAP_0.5:0.95': 'mAP50-95', 'train/box_loss': 'train_box_loss',
                 'train/obj_loss': 'train_obj_loss', 'train/cls_loss': 'train_cls_loss'}


def git_commit(path: Path, ignore: Path | None = None) -> str:
    """HEAD of the git repository at path, with '-dirty' when tracked files (outside `ignore`) differ from it;
    'unknown' outside git."""
    try:
        commit = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=path, capture_output=True, text=True, check=True)
        ignored = Path(ignore).resolve() if ignore else None
        inside = ignored and ignored.is_relative_to(Path(path).resolve())
        exclude = [f':(exclude){ignored}'] if inside else []  # git refuses paths outside the repo
        dirty = subprocess.run(['git', 'status', '--porcelain', '--untracked-files=no', '--', '.', *exclude], cwd=path,
                               capture_output=True, text=True, check=True).stdout.strip()
        return commit.stdout.strip() + ('-dirty' if dirty else '')
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'


def project_commit() -> dict:
    """{'commit': ...} of the project; PROJECT_COMMIT, when set, says which commit its files are (a copy sent to
    another machine, a lent GPU, may carry no .git or the .git of an older checkout); what git said is kept beside."""
    found, given = git_commit(PROJECT), os.environ.get('PROJECT_COMMIT', '').strip()
    if not given or found == given:
        return {'commit': found}
    return {'commit': given, 'commit_source': 'PROJECT_COMMIT', 'git_here': found}


def cpu_name() -> str:
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """What train.py ran on for --device `device` ('' = first GPU if any, else CPU)."""
    import torch
    if device != 'cpu' and torch.cuda.is_available():
        index = int(str(device).split(',')[0]) if str(device).strip() else 0
        return f'{torch.cuda.get_device_name(index)} (CUDA {torch.version.cuda})'
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return f'CPU: {cpu_name()}, {cores} cores'


def provenance(tree: Path, device: str, executor: str | None = None) -> dict:
    """Where a run ran; `executor` (local, a Ray node, a SLURM array task) and the GPUs the engine made visible are
    added when given."""
    import torch
    p = {**project_commit(), 'tree_commit': git_commit(tree), 'machine': socket.gethostname(),
         'platform': platform.platform(), 'device': device_name(device), 'torch': torch.__version__,
         'python': platform.python_version(), 'date': datetime.now(timezone.utc).isoformat(timespec='seconds')}
    if executor:
        p.update(executor=executor, cuda_visible_devices=os.environ.get('CUDA_VISIBLE_DEVICES'))
    return p


def epoch_curve(results_csv: Path) -> list[dict]:
    # train.py's results.csv (validation split, every epoch), with short column names
    df = pd.read_csv(results_csv, skipinitialspace=True)
    df.columns = [c.strip() for c in df.columns]
    df = df[['epoch', *[c for c in EPOCH_COLUMNS if c in df.columns]]].rename(columns=EPOCH_COLUMNS)
    return df.astype(float).astype({'epoch': int}).to_dict('records')


def build_record(abl: dict, run, model: dict, test: dict, train: dict, prov: dict) -> dict:
    return {'record_version': RECORD_VERSION, 'ablation': abl['name'], 'variant': run.variant['name'],
            'seed': run.seed, 'baseline': abl['baseline'], 'cfg': run.variant['cfg'], 'settings': settings(abl),
            'hyp': train['hyp'], 'model': model, 'test': test, 'train': {k: v for k, v in train.items() if k != 'hyp'},
            'epochs': epoch_curve(run.folder / 'train' / 'results.csv'), 'provenance': prov}


def record_path(abl: dict, run) -> Path:
    return abl['out'] / 'records' / f'{run.name}.json'


def write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)


def read_records(abl: dict, extra: list[Path] = ()) -> tuple[list[dict], list[str]]:
    """This ablation's records from its own folder and from `extra` folders or files (merged; a (variant, seed) found
    twice must be the same run). Returns (records, notes about what was left out)."""
    sources = [abl['out'] / 'records', *map(Path, extra)]
    found, notes = {}, []
    for source in sources:
        if not source.exists():
            if source in extra:
                raise AblationError(f'records folder {source} not found')
            continue
        for f in sorted([source] if source.is_file() else source.rglob('*.json')):
            try:
                rec = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise AblationError(f'record {f} cannot be read: {e}') from None
            if not isinstance(rec, dict) or rec.get('record_version') != RECORD_VERSION:
                continue  # not a run record (results.json of something else)
            if rec['ablation'] != abl['name']:
                notes.append(f'{f}: ablation {rec["ablation"]!r}, not {abl["name"]!r}: left out')
                continue
            if rec['settings'] != settings(abl):
                diff = {k: (rec['settings'].get(k), v) for k, v in settings(abl).items() if rec['settings'].get(k) != v}
                raise AblationError(f'record {f} was trained with other settings than {abl["name"]} now has '
                                    f'(record, ablation): {diff}; merge only records of the same settings')
            key = (rec['variant'], rec['seed'])
            if key in found and found[key][1]['test'] != rec['test']:
                raise AblationError(f'{rec["variant"]} seed {rec["seed"]} has two different records: {found[key][0]} '
                                    f'and {f}; keep one')
            found.setdefault(key, (f, rec))
    names = [v['name'] for v in abl['variants']]
    extra_variants = sorted({k[0] for k in found} - set(names))
    if extra_variants:
        notes.append(f'records of variants not in the ablation file, left out: {extra_variants}')
    records = [found[(n, s)][1] for n in names for s in sorted({k[1] for k in found if k[0] == n})]
    return records, notes
