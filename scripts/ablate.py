#!/usr/bin/env python3
"""Ablation runner: every variant x seed through the stock train.py, then val.py on best.pt (test split).

    python scripts/ablate.py run configs/ablations/smoke.yaml              # resumable; writes the report at the end
    python scripts/ablate.py run configs/ablations/bccd-gpu.yaml --shard 2/4   # a deterministic quarter of the runs
    python scripts/ablate.py run ABL.yaml --executor ray [--address auto]  # one Ray task per run, over a cluster
    python scripts/ablate.py slurm ABL.yaml [--parallel 8] [--submit]      # the SLURM array of the missing runs
    python scripts/ablate.py run ABL.yaml --index 7                        # run 7 of the grid's order (array task)
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
    device: cpu                   # '', 'cpu', '0', or a list [0, 1, 2, 3]: one run at a time per entry
                                  # ([cpu, cpu]: two CPU runs at once; v7.0 gives each run cores - 1 threads)
    cpus_per_run: 1               # Ray and SLURM: CPUs each run reserves (with its GPU, or alone when device: cpu)
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
The code is in scripts/ablation/ (config, prepare, run, records, report, executors/{local,ray_tasks,slurm}).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ablation.config import AblationError, load_ablation, parse_shard, plan, run_at, shard_of
from ablation.executors import NAMES, executor, slurm
from ablation.prepare import check_variants, load_job, prepare, save_job
from ablation.records import record_path, write_record
from ablation.report import write_report


def selected_runs(abl: dict, shard: str | None, index: int | None) -> list:
    runs = plan(abl)
    return [run_at(runs, index)] if index is not None else shard_of(runs, parse_shard(shard))


def run_ablation(path: Path, out: Path | None = None, shard: str | None = None, index: int | None = None,
                 name: str = 'local', **options) -> int:
    from tqdm import tqdm
    abl = load_ablation(path, out)
    runs = selected_runs(abl, shard, index)
    todo = [r for r in runs if not record_path(abl, r).exists()]  # a record is a finished run, wherever it ran
    part = f' (shard {shard}: {len(runs)} of {len(plan(abl))})' if shard else f' (run {index})' if index is not None \
        else ''
    print(f'ablate: {abl["name"]}{part}: {len(runs)} runs ({len(abl["variants"])} variants x {len(abl["seeds"])} '
          f'seeds), {len(runs) - len(todo)} already done; {name} executor; output {abl["out"]}', flush=True)
    errors = []
    if todo:
        # checks before anything trains; an array task takes the job its submission prepared
        job = (index is not None and load_job(abl, todo, slurm.job_file(abl))) or \
            prepare(abl, todo, every_variant=index is None)
        bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc='ablation', unit='run', dynamic_ncols=True)

        def done(outcome):  # on the driver: records are written here, whichever executor trained the run
            if outcome.record:
                write_record(record_path(abl, outcome.run), outcome.record)
                test = outcome.record['test']
                bar.write(f'ablate: {outcome.run.name}: mAP50 {test["mAP50"]:.3f}, mAP50-95 {test["mAP50-95"]:.3f}')
            else:
                errors.append(f'{outcome.run.name}: {outcome.error}')
                bar.write(f'ablate: FAILED {outcome.run.name}: {outcome.error}')
            bar.update(1)

        try:
            executor(name).execute(job, todo, done, **options)
        finally:
            bar.close()
    if index is None:  # array tasks leave the report to `report` (they would race to write it)
        command = f'python scripts/ablate.py run {path}' + (f' --shard {shard}' if shard else '')
        write_report(abl, command=command + (f' --executor {name}' if name != 'local' else ''))
    if errors:
        print(f'ablate: {len(errors)} run(s) failed; fix and re-run to continue:\n' + '\n'.join(errors),
              file=sys.stderr)
        return 1
    return 0


def slurm_array(path: Path, out: Path | None, parallel: int | None, sbatch: list[str], submit: bool) -> int:
    """Print (or submit) the array of the runs without a record. Submitting prepares once (every variant checked,
    data and initial weights made): a bad variant fails here, not in every array task, and tasks do not repeat it."""
    abl = load_ablation(path, out)
    missing = slurm.holes(abl)
    if not missing:
        print(f'ablate: all {len(plan(abl))} runs of {abl["name"]} have records in {abl["out"]}; nothing to submit')
        return 0
    runs = plan(abl)
    if submit:  # every variant checked before anything is queued; the tasks reuse the prepared job
        save_job(prepare(abl, [runs[i] for i in missing]), slurm.job_file(abl))
    text = slurm.script(abl, path, missing, parallel, sbatch)
    print(text, end='')
    if submit:
        job = slurm.submit(abl, text)
        print(f'ablate: submitted SLURM job {job}: {len(missing)} of {len(runs)} runs; logs in {abl["out"]}/slurm; '
              f'when it ends: python scripts/ablate.py report {path} --out {abl["out"]}', flush=True)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('command', choices=('run', 'report', 'check', 'slurm'))
    p.add_argument('ablation', type=Path)
    p.add_argument('--out', type=Path, help='output folder (default: the YAML\'s `out`, else runs/ablate/<name>)')
    p.add_argument('--shard', help='run: only share i of n of the runs, e.g. 2/4 (deterministic round robin)')
    p.add_argument('--index', type=int, help='run: only run K (0-based) of the grid\'s order, as a SLURM array task')
    p.add_argument('--executor', default='local', choices=NAMES,
                   help='run: local threads (default), one Ray task per run, or a SLURM array that it waits for')
    p.add_argument('--address', help='run --executor ray: the cluster (auto, or HEAD:6379); default: a local Ray')
    p.add_argument('--parallel', type=int, help='slurm: at most P array tasks at once (--array=...%%P)')
    p.add_argument('--sbatch', action='append', default=[], metavar='OPTION',
                   help='slurm: another #SBATCH option, e.g. --sbatch=--partition=gpu --sbatch=--time=12:00:00')
    p.add_argument('--submit', action='store_true', help='slurm: submit the array with sbatch (else print it)')
    p.add_argument('--records', type=Path, nargs='+', default=[],
                   help='report: also merge the records found under these folders (other machines, array jobs)')
    opt = p.parse_args(argv)
    try:
        if opt.command == 'run':
            if opt.index is not None and (opt.shard or opt.executor != 'local'):
                raise AblationError('--index K runs one run here: without --shard or --executor')
            options = ({'address': opt.address} if opt.executor == 'ray' else
                       {'ablation': opt.ablation, 'parallel': opt.parallel, 'sbatch': opt.sbatch}
                       if opt.executor == 'slurm' else {'label': slurm.this_task() or 'local'})
            return run_ablation(opt.ablation, opt.out, opt.shard, opt.index, opt.executor, **options)
        if opt.command == 'slurm':
            return slurm_array(opt.ablation, opt.out, opt.parallel, opt.sbatch, opt.submit)
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
    except KeyboardInterrupt:
        print('ablate: interrupted; finished runs keep their records, run again to go on', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
