"""One run, wherever an executor runs it: train.py (or --resume from its last checkpoint), then val.py on best.pt
(test split); returns the run's record, which the driver writes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .config import MEASUREMENT_ENV, PROJECT, AblationError, Run, variant_dir
from .prepare import Job, data_yaml
from .records import build_record, provenance

TRANSFER_LINE = 'Transferred '


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


def train_and_validate(job: Job, run: Run, device: str, executor: str) -> dict:
    """Train (or resume, or only validate) the run in its folder; returns its record."""
    abl, data = job.abl, job.data
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'WANDB_MODE': 'disabled', **MEASUREMENT_ENV}
    run.folder.mkdir(parents=True, exist_ok=True)
    state = run_state(run)
    if state in ('new', 'interrupted'):
        attempts = train_attempts(run) if state == 'interrupted' else []
        cmd = resume_command(run, abl) if state == 'interrupted' else train_command(run, abl, data, device,
                                                                                  job.weights(run))
        attempts.append({'start': time.time(), 'end': None, 'resume': state == 'interrupted'})
        (run.folder / 'attempts.json').write_text(json.dumps(attempts))
        _call(cmd, abl['tree'], env, run.folder / 'train.log', append=state == 'interrupted')
        attempts[-1]['end'] = time.time()
        (run.folder / 'attempts.json').write_text(json.dumps(attempts))
        (run.folder / 'train.json').write_text(json.dumps({'seconds': sum(a['end'] - a['start'] for a in attempts),
                                                           'attempts': len(attempts)}))
    if state != 'done':
        _call(val_command(run, abl, data, device), abl['tree'], env, run.folder / 'val.log')
    return record_of(job, run, provenance(abl['tree'], device, executor))


def record_of(job: Job, run: Run, prov: dict) -> dict:
    """The run's self-contained record, once val.json exists."""
    abl, init = job.abl, job.inits[run.seed]
    train = json.loads((run.folder / 'train.json').read_text())
    hyp_file = variant_dir(abl, run.variant) / 'hyp.yaml'
    log = (run.folder / 'train.log').read_text(errors='replace')
    transfer = next((line.strip() for line in log.splitlines() if TRANSFER_LINE in line), None)
    train.update(hyp=yaml.safe_load(hyp_file.read_text()), init=init.name if init else None,
                 init_sha256=job.init_digests.get(run.seed), transfer=transfer)
    test = json.loads((run.folder / 'val.json').read_text())
    return build_record(abl, run, job.sizes[run.variant['name']], test, train, prov)


def _die_with_parent():
    # Linux: when the worker that started train.py dies (a Ray worker or node killed, a SLURM task cancelled),
    # train.py dies with it instead of training on as an orphan beside the retried run
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _call(cmd, cwd, env, log_file: Path, append=False) -> None:
    with open(log_file, 'a' if append else 'w') as f:
        f.write('$ ' + ' '.join(cmd) + '\n')
        f.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT,
                              preexec_fn=_die_with_parent if sys.platform == 'linux' else None)
    if proc.returncode:
        text = log_file.read_text(errors='replace')
        raise RuntimeError(f'{Path(cmd[1]).name} failed ({proc.returncode}); last lines of {log_file}:\n'
                           + '\n'.join(text.splitlines()[-15:]))


def ensure_inputs(job: Job, files: dict[str, bytes]) -> None:
    """On a node that does not share the driver's folder: the tree must be there (the same path on every node), the
    variant files and initial weights come from the driver, the tiny dataset is generated again (deterministic)."""
    import socket
    if not (job.abl['tree'] / 'train.py').exists():
        raise AblationError(f'no built tree at {job.abl["tree"]} on {socket.gethostname()}: the project and its tree '
                            'must be at the same path on every node (make apply there, or a shared file system)')
    for path, content in files.items():
        p = Path(path)
        if not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_name(f'.{p.name}.{os.getpid()}.tmp')
            tmp.write_bytes(content)
            tmp.replace(p)
    if not job.data.exists():
        if job.abl['data'] != 'tiny':
            raise AblationError(f'data YAML {job.data} not found on {socket.gethostname()}: the dataset must be at '
                                'the same path on every node (a shared file system, or a copy)')
        data_yaml(job.abl)
