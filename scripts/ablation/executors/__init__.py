"""Where runs execute. Every executor has the same shape, so the driver (scripts/ablate.py run) does not care which:

    execute(job, runs, done, **options)

trains each of `runs` somewhere (ablation/run.py: train.py, then val.py) and calls done(Outcome) on the driver for
each, with the run's record or its error. The driver writes the records and the report, so no executor needs a
folder shared with the driver. Ctrl-C stops them (KeyboardInterrupt out of execute).

    local  threads on this machine, one per device entry of the YAML (`run`; `run --index K` runs one)
    ray    one Ray task per run over the GPUs (or CPUs) of a Ray cluster, retried when its worker or node dies
    slurm  an sbatch array of `run --index K` tasks, each the local executor on one run (`ablate.py slurm`)
"""
from __future__ import annotations

from dataclasses import dataclass

from ..config import AblationError, Run

NAMES = ('local', 'ray', 'slurm')


@dataclass
class Outcome:
    run: Run
    record: dict | None = None  # the run's record, to write; None when it failed
    error: str | None = None


def executor(name: str):
    """The module of executor `name` (imported on demand: Ray is an optional extra)."""
    if name == 'local':
        from . import local
        return local
    if name == 'ray':
        from . import ray_tasks
        return ray_tasks
    if name == 'slurm':
        from . import slurm
        return slurm
    raise AblationError(f'executor {name!r} is not one of {", ".join(NAMES)}')
