"""SLURM executor: one sbatch array for the runs that have no record yet, task K running run K of the grid's stable
order (`ablate.py run ABL.yaml --index K`, the local executor on one run), one GPU each, at most P at a time
(--array=...%P), requeued when its node fails. Array tasks write their records into the folder the job names (a
shared file system); submitting again fills only the holes."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from ..config import PROJECT, AblationError, needs_gpu, plan
from ..prepare import save_job
from ..records import read_records, record_path
from . import Outcome


def this_task() -> str | None:
    """'slurm job <array job>_<task>' inside an array task, else None: where a record says it ran."""
    job, task = os.environ.get('SLURM_ARRAY_JOB_ID'), os.environ.get('SLURM_ARRAY_TASK_ID')
    return f'slurm job {job}_{task}' if job and task else None


def job_file(abl: dict) -> Path:
    """Where submitting saves the prepared job, so that each array task need not prepare again (ablation/prepare.py)."""
    return abl['out'] / 'slurm' / 'job.json'


def holes(abl: dict) -> list[int]:
    """Indices of the plan (0-based, the order --index and --shard use) whose run has no record in the folder."""
    return [i for i, r in enumerate(plan(abl)) if not record_path(abl, r).exists()]


def array_spec(indices: list[int], parallel: int | None) -> str:
    """sbatch --array: runs of consecutive indices as ranges ('0-3,7,9-10'), then %P (at most P tasks at once)."""
    if parallel is not None and parallel < 1:
        raise AblationError(f'--parallel {parallel}: at most P array tasks at once needs P >= 1')
    parts, start = [], None
    for i, k in enumerate(indices):
        start = k if start is None else start
        if i + 1 == len(indices) or indices[i + 1] != k + 1:
            parts.append(str(k) if k == start else f'{start}-{k}')
            start = None
    return ','.join(parts) + (f'%{parallel}' if parallel else '')


def script(abl: dict, ablation: Path, indices: list[int], parallel: int | None = None, sbatch=()) -> str:
    """The array job: #SBATCH lines (the user's own `sbatch` options last, so they win), then the task's command."""
    out = abl['out']
    options = [f'--job-name=ablate-{abl["name"]}', f'--array={array_spec(indices, parallel)}',
               *(['--gres=gpu:1'] if needs_gpu(abl) else []), f'--cpus-per-task={abl["cpus_per_run"]}', '--requeue',
               f'--output={out / "slurm" / "%A_%a.log"}', *sbatch]
    command = [sys.executable, 'scripts/ablate.py', 'run', str(Path(ablation).resolve()), '--out', str(out),
               '--index']
    return '\n'.join(['#!/bin/bash', *(f'#SBATCH {o}' for o in options),
                      f'# task K trains run K of the {len(plan(abl))} (ablate.py run ... --index K), its record into',
                      f'# {out}/records/; when the array is done:',
                      f'#   python scripts/ablate.py report {ablation} --out {out}',
                      f'cd {shlex.quote(str(PROJECT))}',
                      f'exec {shlex.join(command)} "$SLURM_ARRAY_TASK_ID"', ''])


def submit(abl: dict, text: str, wait: bool = False) -> str:
    """sbatch the script (kept in <out>/slurm/ beside the tasks' logs); returns the job id. wait: until the array
    ends (Ctrl-C cancels it)."""
    folder = abl['out'] / 'slurm'
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f'array-{len(list(folder.glob("array-*.sbatch")))}.sbatch'
    path.write_text(text)
    try:
        proc = subprocess.Popen(['sbatch', '--parsable', *(['--wait'] if wait else []), str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise AblationError('sbatch not found: submit from a SLURM login node (or where slurm-client is '
                            'installed)') from None
    job = proc.stdout.readline().strip().split(';')[0]  # printed at submission, before --wait waits
    try:
        proc.wait()
    except KeyboardInterrupt:
        subprocess.run(['scancel', job])
        print(f'ablate: cancelled SLURM job {job}', flush=True)
        raise
    if not job:  # with --wait a failed task also ends sbatch with an error: its record is missing, said below
        raise AblationError(f'sbatch {path} failed ({proc.returncode}): {proc.stderr.read().strip()}')
    return job


def execute(job, runs, done, ablation: Path, parallel: int | None = None, sbatch=()) -> None:
    """Submit the runs as an array, wait until it ends, then hand back each run's record (or its absence)."""
    abl = job.abl
    index = {r.name: i for i, r in enumerate(plan(abl))}
    save_job(job, job_file(abl))
    submit(abl, script(abl, ablation, sorted(index[r.name] for r in runs), parallel, sbatch), wait=True)
    found = {(r['variant'], r['seed']): r for r in read_records(abl)[0]}
    for r in runs:
        rec = found.get((r.variant['name'], r.seed))
        done(Outcome(r, record=rec) if rec else Outcome(r, error=f'array task {index[r.name]} left no record; see '
                                                                  f'{abl["out"] / "slurm"}/*_{index[r.name]}.log'))
