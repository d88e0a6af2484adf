"""Ray executor: one Ray task per run. A run asks for one GPU (or `cpus_per_run` CPUs when the YAML trains on the CPU),
so Ray places runs over the GPUs of every node and sets each task's CUDA_VISIBLE_DEVICES to its GPU. A task whose
worker or node dies is retried: it resumes from last.pt when the run folder is on a shared file system, else it starts
again. A failed train.py comes back as a failed Outcome; records come back to the driver.

Needs the optional extra (make setup-ray), the project at the same path on every node, and the data there too."""
from __future__ import annotations

from pathlib import Path

from ..config import PROJECT, AblationError, cluster_device, needs_gpu
from ..prepare import shared_inputs
from ..run import ensure_inputs, train_and_validate
from . import Outcome

RETRIES = 3  # attempts after the first when a worker or node dies (train.py failing is not retried)
CANCEL_WAIT = 30  # seconds Ctrl-C waits for Ray to confirm that the cancelled tasks stopped


def train_task(job, run, files: list[str], inputs: list) -> Outcome:
    """The Ray task, on whichever node Ray chose, with CUDA_VISIBLE_DEVICES set to the run's GPU. `inputs` holds a
    reference to the driver's copies of `files`, fetched only where some are missing (no shared file system)."""
    import ray
    node = ray.get_runtime_context().get_node_id()
    try:
        missing = [f for f in files if not Path(f).exists()]
        ensure_inputs(job, ray.get(inputs[0]) if missing else {})
        return Outcome(run, record=train_and_validate(job, run, cluster_device(job.abl), f'ray node {node}'))
    except Exception as e:  # the run failed, not its worker: reported, not retried
        return Outcome(run, error=f'{e} (on ray node {node})')


def resources(abl: dict) -> dict:
    """What one run reserves: a GPU and cpus_per_run CPUs, or cpus_per_run CPUs on the CPU."""
    return {'num_gpus': 1 if needs_gpu(abl) else 0, 'num_cpus': abl['cpus_per_run']}


def execute(job, runs, done, address: str | None = None) -> None:
    try:
        import ray
    except ImportError:
        raise AblationError('--executor ray needs Ray, an optional extra: make setup-ray '
                            '(pip install -r requirements-ray.txt)') from None
    # workers import this package from the project, at the same path on every node
    ray.init(address=address or 'local',  # no address: a Ray of its own on this machine
             logging_level='WARNING', log_to_driver=False,
             runtime_env={'env_vars': {'PYTHONPATH': str(PROJECT / 'scripts')}})
    try:
        need = resources(job.abl)
        have = ray.cluster_resources()
        if need['num_gpus'] > have.get('GPU', 0) or need['num_cpus'] > have.get('CPU', 0):
            raise AblationError(f'each run needs {need["num_gpus"]} GPU and {need["num_cpus"]} CPUs; the Ray cluster '
                                f'has {have.get("GPU", 0):g} GPUs and {have.get("CPU", 0):g} CPUs (device: '
                                f'{job.abl["device"]!r}, cpus_per_run: {job.abl["cpus_per_run"]})')
        task = ray.remote(train_task).options(**need, max_retries=RETRIES, retry_exceptions=False)
        files = shared_inputs(job)
        inputs = ray.put(files)  # in a list below, so that Ray does not fetch it for every task
        pending = {task.remote(job, r, list(files), [inputs]): r for r in runs}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)  # timeout: Ctrl-C gets through
                for ref in ready:
                    run = pending.pop(ref)
                    try:
                        done(ray.get(ref))
                    except ray.exceptions.RayError as e:  # retries used up: its worker or node kept dying
                        done(Outcome(run, error=f'{type(e).__name__} after {RETRIES} retries: {e}'))
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)  # force: kills the worker, and its train.py with it
            stopped, _ = ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT)
            print(f'ablate: cancelled {len(stopped)} of {len(pending)} Ray task(s)', flush=True)
            raise
    finally:
        ray.shutdown()
