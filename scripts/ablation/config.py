"""Ablation YAMLs (configs/ablations/*.yaml): loading, each variant's model and hyp files, the runs in their stable
order, shards and single runs (--index)."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from overlay_import import overlay_module

PROJECT = Path(__file__).resolve().parents[2]
model_names = overlay_module('model_names')  # what train.py --cfg yolov5n_EMA.yaml does, the same code
SCALES = model_names.SCALES
SHARED_KEYS = {'name', 'out', 'data', 'img', 'epochs', 'batch', 'weights', 'seeds', 'device', 'hyp', 'scale',
               'baseline', 'variants', 'workers', 'tree', 'args', 'paired_init', 'cpus_per_run'}
VARIANT_KEYS = {'name', 'cfg', 'hyp', 'hyp_file', 'scale', 'transfer', 'against'}
TRANSFERS = ('structure', 'name')  # train.py --transfer: by architecture (ours), or by tensor name (v7.0's)
DEFAULTS = {'img': 640, 'epochs': 100, 'batch': 16, 'weights': '', 'seeds': [0], 'device': '', 'workers': 8, 'args': [],
            'hyp': 'hyp.scratch-low.yaml', 'paired_init': True, 'cpus_per_run': 1}
# What a run's result depends on besides its variant and seed: records that differ here are not comparable
SETTINGS = ('data', 'img', 'epochs', 'batch', 'weights', 'workers', 'args', 'paired_init')
# How every run is measured: NMS never gives up part of a validation batch (utils/nms_time.py), whatever the machine
MEASUREMENT_ENV = {'YOLOV5_NMS_TIME_LIMIT': 'none'}


class AblationError(ValueError):
    """A bad ablation file, variant or record; the message names it."""


@dataclass
class Run:
    variant: dict
    seed: int
    folder: Path  # <out>/runs/<variant>-s<seed>

    @property
    def name(self):
        return self.folder.name


def presets():
    return ', '.join(sorted(p.name for p in (PROJECT / 'configs' / 'ablations').glob('*.yaml')))


def load_ablation(path: Path, out: Path | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise AblationError(f'ablation file {path} not found; presets: {presets()}')
    abl = yaml.safe_load(path.read_text()) or {}
    unknown = set(abl) - SHARED_KEYS
    if unknown:
        raise AblationError(f'{path.name}: unknown keys {sorted(unknown)}; valid: {sorted(SHARED_KEYS)}')
    if not abl.get('variants'):
        raise AblationError(f'{path.name}: no variants')
    abl.setdefault('name', path.stem)
    abl['out'] = resolve(out or abl.get('out', f'runs/ablate/{abl["name"]}'))
    abl['tree'] = resolve(abl.get('tree', 'yolov5'))
    for k, v in DEFAULTS.items():
        abl.setdefault(k, v)
    abl.setdefault('data', 'tiny')
    abl['seeds'] = abl['seeds'] if isinstance(abl['seeds'], list) else [abl['seeds']]
    abl['hyp'] = hyp_list(abl['hyp'])
    if not isinstance(abl['cpus_per_run'], int) or isinstance(abl['cpus_per_run'], bool) or abl['cpus_per_run'] < 1:
        raise AblationError(f'{path.name}: cpus_per_run {abl["cpus_per_run"]!r} is not a whole number >= 1 (the CPUs '
                            'each run reserves on Ray or SLURM)')
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
        if v.get('transfer', 'structure') not in TRANSFERS:
            raise AblationError(f'variant {label}: transfer {v["transfer"]!r} is not one of {", ".join(TRANSFERS)}')
    abl.setdefault('baseline', names[0])
    if abl['baseline'] not in names:
        raise AblationError(f'baseline {abl["baseline"]!r} is not a variant; variants: {names}')
    for v in abl['variants']:  # compared with another variant than the baseline (report)
        if 'against' in v and (v['against'] not in names or v['against'] == v['name']):
            raise AblationError(f'variant {v["name"]}: against {v["against"]!r} is not another variant; variants: '
                                f'{names}')
    return abl


def resolve(path) -> Path:
    p = Path(path)
    return p if p.is_absolute() else (PROJECT / p)


def hyp_list(value) -> list[str]:
    # a file, 'a.yaml,b.yaml' or a list of files: layered left to right as train.py's --hyp does
    items = value if isinstance(value, list) else str(value).split(',')
    return [str(x).strip() for x in items if str(x).strip()]


def find_hyp(name: str, tree: Path) -> Path:
    for candidate in (resolve(name), PROJECT / 'configs' / 'hyps' / name, tree / 'data' / 'hyps' / name):
        if candidate.is_file():
            return candidate
    raise AblationError(f'hyp file {name!r} not found (a path relative to the project, or a name in configs/hyps/ '
                        'or yolov5/data/hyps/)')


def find_cfg(abl: dict, v: dict) -> Path:
    if resolve(v['cfg']).is_file():
        return resolve(v['cfg'])
    try:  # a name in configs/models/ or yolov5/models/, at any scale (yolov5n_EMA.yaml)
        return model_names.model_yaml(Path(v['cfg']).name, [PROJECT / 'configs' / 'models', abl['tree'] / 'models'])
    except FileNotFoundError as e:
        raise AblationError(f'variant {v["name"]}: model YAML {v["cfg"]!r} not found ({e}; paths are relative to the '
                            'project, or a name in configs/models/ or yolov5/models/, at any scale)') from None


def variant_dir(abl: dict, v: dict) -> Path:
    return abl['out'] / 'variants' / v['name']


def variant_model(abl: dict, v: dict) -> dict:
    cfg = yaml.safe_load(find_cfg(abl, v).read_text())
    scale = v.get('scale', abl.get('scale'))
    try:
        return model_names.with_scale(cfg, scale) if scale else cfg
    except ValueError as e:
        raise AblationError(f'variant {v["name"]}: {e}') from None


def variant_hyp_files(abl: dict, v: dict) -> list[Path]:
    """The ablation's base files, then the variant's own (hyp_file), each found on disk."""
    try:
        return [find_hyp(f, abl['tree']) for f in abl['hyp'] + hyp_list(v.get('hyp_file') or [])]
    except AblationError as e:
        raise AblationError(f'variant {v["name"]}: {e}') from None


def write_variant_files(abl: dict, v: dict, hyp: dict) -> tuple[Path, Path]:
    """The variant's model YAML and merged hyp YAML, as train.py gets them; returns their paths."""
    folder = variant_dir(abl, v)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path, hyp_path = folder / 'model.yaml', folder / 'hyp.yaml'
    write_if_changed(cfg_path, yaml.safe_dump(variant_model(abl, v), sort_keys=False))
    write_if_changed(hyp_path, yaml.safe_dump(hyp, sort_keys=False))
    return cfg_path, hyp_path


def write_if_changed(path: Path, text: str) -> None:
    # shards sharing a folder write the same files: rename whole files, and only when the content differs
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
    tmp.write_text(text)
    tmp.replace(path)


def plan(abl: dict) -> list[Run]:
    return [Run(v, s, abl['out'] / 'runs' / f'{v["name"]}-s{s}') for v in abl['variants'] for s in abl['seeds']]


def parse_shard(text: str | None) -> tuple[int, int]:
    """'i/n' (1 <= i <= n) -> (i, n); None -> (1, 1)."""
    if not text:
        return 1, 1
    m = re.fullmatch(r'(\d+)/(\d+)', text.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise AblationError(f'--shard {text!r}: expected i/n with 1 <= i <= n, e.g. 2/4')
    return int(m.group(1)), int(m.group(2))


def shard_of(runs: list[Run], shard: tuple[int, int]) -> list[Run]:
    # round robin over the plan (variant by variant, seed by seed): every shard gets a similar mix of models
    i, n = shard
    return [r for j, r in enumerate(runs) if j % n == i - 1]


def run_at(runs: list[Run], index: int) -> Run:
    """Run `index` (0-based) of the plan's stable order, the order --shard deals from: a SLURM array task's run."""
    if not 0 <= index < len(runs):
        raise AblationError(f'--index {index}: the grid has {len(runs)} runs, valid indices 0 to {len(runs) - 1}')
    return runs[index]


def settings(abl: dict) -> dict:
    return {**{k: (str(abl[k]) if k == 'data' else abl[k]) for k in SETTINGS}, 'environment': MEASUREMENT_ENV}


def devices_of(abl: dict) -> list[str]:
    d = abl['device']
    return [str(x) for x in d] if isinstance(d, list) else [str(d)]


def needs_gpu(abl: dict) -> bool:
    """Whether a run asks Ray or SLURM for a GPU: any device but 'cpu' ('' is a GPU if there is one)."""
    return any(d.strip().lower() != 'cpu' for d in devices_of(abl))


def cluster_device(abl: dict) -> str:
    """train.py's --device for a run that Ray or SLURM gave one GPU: that GPU is the only one the run sees (both set
    CUDA_VISIBLE_DEVICES), so it is device 0; 'cpu' stays on the CPU, '' (first GPU if any) stays ''."""
    if not needs_gpu(abl):
        return 'cpu'
    return '' if devices_of(abl) == [''] else '0'
