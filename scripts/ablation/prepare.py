"""Before anything trains, on the driver: every variant's model and hyp checked, the data, the paired initial weights.
The result is a Job, what every executor needs to train any of its runs."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .config import (AblationError, Run, devices_of, resolve, variant_dir, variant_hyp_files, variant_model,
                     write_variant_files)


@dataclass
class Job:
    """A prepared ablation: its settings, the data YAML, model sizes and each seed's initial weights (None: train.py's
    --weights as the YAML says). Pickled as it is to Ray workers."""
    abl: dict
    data: Path
    sizes: dict  # {variant: {'layers', 'params', 'gflops'}}
    inits: dict  # {seed: Path | None}
    init_digests: dict = field(default_factory=dict)  # {seed: sha256 of the weights}: workers need no torch for it

    def weights(self, run: Run) -> str:
        init = self.inits[run.seed]
        return str(init) if init else weights_argument(self.abl['weights'])


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


SIZES = {}  # (model YAML text, nc, anchors) -> model_size: building and counting a model is the slow part


def check_variants(abl: dict, nc: int = 2, names=None) -> dict:
    """Build each variant's model (those in `names`, default all) and check its hyp before anything trains; errors
    name the variant. Writes each variant's model.yaml and hyp.yaml; returns {variant: model size}."""
    import_tree(abl['tree'])
    from models.yolo import Model
    sizes = {}
    for v in abl['variants']:
        if names is not None and v['name'] not in names:
            continue
        hyp = variant_hyp(abl, v)
        cfg, _ = write_variant_files(abl, v, hyp)
        key = (Path(cfg).read_text(), nc, str(hyp.get('anchors')))  # variants differing in hyp only share a model
        try:
            if key not in SIZES:
                SIZES[key] = model_size(Model(str(cfg), nc=nc, anchors=hyp.get('anchors')))
            sizes[v['name']] = SIZES[key]
        except Exception as e:
            raise AblationError(f'variant {v["name"]}: {type(e).__name__}: {e}') from None
    return sizes


def model_size(model) -> dict:
    # as YOLOv5's model summary counts them; GFLOPs at 640 px
    from bench import gflops
    return {'layers': len(list(model.modules())), 'params': sum(p.numel() for p in model.parameters()),
            'gflops': round(gflops(model, next(model.parameters()).device), 2)}


@contextmanager
def locked(path: Path):
    # several processes (SLURM array tasks, shards, Ray workers on one node) may build the same shared input at once
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def data_yaml(abl: dict) -> Path:
    if abl['data'] == 'tiny':
        from make_tiny_dataset import make_dataset
        target = abl['out'] / 'tiny'
        with locked(abl['out'] / '.tiny.lock'):
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


def prepare(abl: dict, runs: list[Run], every_variant: bool = True) -> Job:
    """Check every variant (or only the runs' own: a SLURM array task, prepared before submitting), the data and the
    initial weights of the runs' seeds."""
    data = data_yaml(abl)
    import_tree(abl['tree'])
    nc = number_of_classes(data)
    sizes = check_variants(abl, nc, None if every_variant else {r.variant['name'] for r in runs})  # fail fast
    paired = abl['paired_init'] and not abl['weights']
    inits = {s: init_weights(abl, s, nc) if paired else None for s in sorted({r.seed for r in runs})}
    if len(devices_of(abl)) > 1:
        build_label_caches(data)
    return Job(abl, data, sizes, inits, {s: weights_digest(p) for s, p in inits.items() if p})


def shared_inputs(job: Job) -> dict[str, bytes]:
    """The files a run reads from the ablation's folder (variant model/hyp YAMLs, initial weights), by path: a Ray
    worker on a node without the driver's folder writes them before training (ablation/run.py)."""
    files = [p for name in job.sizes for p in (variant_dir(job.abl, {'name': name}) / 'model.yaml',
                                               variant_dir(job.abl, {'name': name}) / 'hyp.yaml')]
    files += [p for p in job.inits.values() if p]
    return {str(p): p.read_bytes() for p in files}


def _portable(abl: dict) -> str:
    return json.dumps(abl, default=str, sort_keys=True)


def save_job(job: Job, path: Path) -> None:
    """The prepared job as JSON (no pickle: a shared folder's file runs no code), for the array tasks of a SLURM job:
    they skip preparing (model builds, torch in the task's own process) when the ablation is still the same."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({'ablation': _portable(job.abl), 'data': str(job.data), 'sizes': job.sizes,
                       'inits': {s: str(p) if p else None for s, p in job.inits.items()},
                       'init_digests': job.init_digests})
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_text(text)
    tmp.replace(path)


def load_job(abl: dict, runs: list[Run], path: Path) -> Job | None:
    """The job save_job wrote, if it was prepared from the same ablation settings and covers `runs`; else None."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if saved.get('ablation') != _portable(abl):
        return None  # the YAML changed since: prepare again
    inits = {int(s): Path(p) if p else None for s, p in saved['inits'].items()}
    job = Job(abl, Path(saved['data']), saved['sizes'], inits, {int(s): d for s, d in saved['init_digests'].items()})
    covered = all(r.variant['name'] in job.sizes and r.seed in inits and (inits[r.seed] or Path()).exists()
                  for r in runs)
    return job if covered and job.data.exists() else None
