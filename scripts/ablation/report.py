"""Ablation report from run records: per-variant mean ± std, paired differences against the baseline (same seed =
same data order and, where the architecture allows, same initial weights) with 95% t intervals and a verdict, the
seeds needed to resolve each difference, and two figures; written by the driver from records only, whichever
executor trained them."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .config import PROJECT
from .records import git_commit, read_records

METRICS = ('mAP50', 'mAP50-95')
PRIMARY = 'mAP50-95'
CONFIDENCE = 0.95
MAX_SEEDS = 1000  # "more than this" when a difference is too small for its spread
POWER = 0.8  # the usual planning power: a true difference of the size quoted is found 4 times in 5
PLANNED_SEEDS = (3, 5, 10)  # seed counts the planning line quotes, beside the YAML's own
PLATEAU_EPOCHS = 10  # how far from a plateau a run ended: its validation rise over this many last epochs


def final_rise(epochs: list[dict]) -> float:
    """Validation PRIMARY gained over the last PLATEAU_EPOCHS epochs (nan for a shorter run): near 0 on a plateau."""
    curve = [e[PRIMARY] for e in sorted(epochs or [], key=lambda e: e['epoch'])]
    return curve[-1] - curve[-1 - PLATEAU_EPOCHS] if len(curve) > PLATEAU_EPOCHS else math.nan


def runs_table(records: list[dict]) -> pd.DataFrame:
    """One row per run: variant, seed, model size, test metrics, times, how far from its plateau it ended."""
    return pd.DataFrame([{
        'variant': r['variant'], 'seed': r['seed'], 'params': r['model'].get('params'),
        'gflops': r['model'].get('gflops'), 'P': r['test']['P'], 'R': r['test']['R'], 'mAP50': r['test']['mAP50'],
        'mAP50-95': r['test']['mAP50-95'], 'train_min': r['train'].get('seconds', math.nan) / 60,
        'infer_ms': r['test'].get('speed_ms', {}).get('inference', math.nan), 'rise': final_rise(r.get('epochs')),
        'device': r['provenance'].get('device'), 'commit': r['provenance'].get('commit'),
        'machine': r['provenance'].get('machine'), 'torch': r['provenance'].get('torch'),
        'date': r['provenance'].get('date')} for r in records])


def per_variant(runs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every metric, one row per variant (in ablation order)."""
    g = runs.groupby('variant', sort=False)
    table = g[['P', 'R', 'mAP50', 'mAP50-95', 'train_min', 'infer_ms', 'rise']].agg(['mean', 'std'])
    table.columns = [f'{m}_{s}' for m, s in table.columns]
    table['seeds'] = g.size()
    table['params'], table['gflops'] = g['params'].first(), g['gflops'].first()
    return table.reindex([v for v in order if v in table.index])


def interval(diffs) -> tuple[float, float, float]:
    """(mean, low, high): mean paired difference and its two-sided t confidence interval (nan below 2 seeds)."""
    d = np.asarray(diffs, dtype=float)
    mean = float(d.mean()) if len(d) else math.nan
    if len(d) < 2:
        return mean, math.nan, math.nan
    sem = float(d.std(ddof=1)) / math.sqrt(len(d))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(d) - 1)) * sem
    return mean, mean - half, mean + half


def p_value(diffs) -> float:
    """Two-sided p of the paired t test that the mean difference is 0 (nan below 2 seeds or with no spread)."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2 or float(d.std(ddof=1)) == 0:
        return math.nan
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def holm(p_values) -> list[float]:
    """Holm-adjusted p-values (one family: every comparison of a table): the chance that any comparison of the
    family shows a difference where none is stays at the level the adjusted p is compared with. nan stays nan."""
    p = pd.Series(p_values, dtype=float)
    known = p.dropna().sort_values()
    scaled = (known * np.arange(len(known), 0, -1)).cummax().clip(upper=1.0)
    return p.where(p.isna(), scaled.reindex(p.index)).tolist()


def verdict(n, low, high) -> str:
    if n < 2:
        return 'needs 2+ seeds'
    if low > 0:
        return 'better'
    if high < 0:
        return 'worse'
    return f'no evidence at {n} seeds'


def seeds_to_resolve(diffs) -> float:
    """Fewest paired seeds whose 95% interval would exclude 0 if the mean difference and its spread stayed as
    observed: the smallest n with t(n-1) * sd / sqrt(n) < |mean|. nan below 2 seeds, inf beyond MAX_SEEDS."""
    d = np.asarray(diffs, dtype=float)
    if len(d) < 2:
        return math.nan
    mean, sd = abs(float(d.mean())), float(d.std(ddof=1))
    if sd == 0:
        return 2 if mean > 0 else math.inf
    for n in range(2, MAX_SEEDS + 1):
        if stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n) < mean:
            return n
    return math.inf


def detectable_difference(sd: float, n: int, power: float = POWER) -> float:
    """Smallest true mean difference that a two-sided 95% paired t interval over n seeds excludes 0 for with
    probability `power`, when the paired differences have standard deviation sd (exact: noncentral t)."""
    if n < 2 or not sd > 0:
        return math.nan
    df, crit = n - 1, float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1))

    def shortfall(delta):  # lower tail as sf of the mirrored distribution: scipy's nct.cdf gives nan there
        nc = delta * math.sqrt(n) / sd
        return stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc) - power

    high = sd
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high))


def seeds_plan(abl: dict, runs: pd.DataFrame) -> list[str]:
    """Lines saying which differences the baseline's measured spread lets a table of n seeds resolve: the basis
    for choosing the number of seeds (nothing before the baseline has 2 seeds)."""
    base = runs.loc[runs['variant'] == abl['baseline'], PRIMARY].dropna()
    if len(base) < 2:
        return []
    sd = float(base.std(ddof=1))
    counts = sorted({*PLANNED_SEEDS, len(abl['seeds'])})
    found = ', '.join(f'{detectable_difference(sd * math.sqrt(2), n):.3f} at {n} seeds' for n in counts)
    return ['', f'Seeds from the baseline\'s spread: its {PRIMARY} has standard deviation {sd:.3f} over {len(base)} '
                f'seeds. If a variant varied as much, independently of it, the paired difference (standard deviation '
                f'{sd:.3f} × √2) would be told from 0 by the {CONFIDENCE:.0%} interval {POWER:.0%} of the time when '
                f'it is at least {found}; the YAML asks for {len(abl["seeds"])}.']


def references(abl: dict) -> dict:
    """{variant: the variant it is compared with}: the baseline, or the one its `against:` names (EMA with v7.0's
    transfer against EMA with ours)."""
    return {v['name']: v.get('against', abl['baseline']) for v in abl['variants']}


def paired(runs: pd.DataFrame, order: list[str], baseline: str, against: dict | None = None) -> pd.DataFrame:
    """Per variant: seeds shared with its reference (the baseline unless `against` says otherwise), and for each
    metric the mean paired difference, its interval, the verdict and the seeds needed to resolve it."""
    wide = {m: runs.pivot_table(index='seed', columns='variant', values=m) for m in METRICS}
    rows = []
    for v in order:
        ref = (against or {}).get(v, baseline)
        if v == ref or v not in wide[PRIMARY] or ref not in wide[PRIMARY]:
            continue
        row = {'variant': v, 'against': ref}
        for m in METRICS:
            d = (wide[m][v] - wide[m][ref]).dropna()
            mean, low, high = interval(d)
            row.update({'pairs': len(d), f'd_{m}': mean, f'd_{m}_low': low, f'd_{m}_high': high,
                        f'verdict_{m}': verdict(len(d), low, high), f'seeds_{m}': seeds_to_resolve(d),
                        f'p_{m}': p_value(d)})
        rows.append(row)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).set_index('variant')
    for m in METRICS:
        table[f'holm_{m}'] = holm(table[f'p_{m}'])
    return table


def short_commit(commit: str) -> str:
    return commit[:12] + ('-dirty' if commit.endswith('-dirty') else '')


def _pm(mean, std, digits=3, signed=False):
    if pd.isna(mean):
        return '-'
    return f'{mean:{"+" if signed else ""}.{digits}f} ± {0 if pd.isna(std) else std:.{digits}f}'


def _ci(mean, low, high):
    if pd.isna(mean):
        return '-'
    return f'{mean:+.3f}' if pd.isna(low) else f'{mean:+.3f} [{low:+.3f}, {high:+.3f}]'


def _p(p):
    return '-' if pd.isna(p) else f'{p:.3f}'


def many_comparisons(diffs: pd.DataFrame) -> list[str]:
    """The line that reads the verdicts against the number of comparisons the table makes."""
    k = int(diffs[f'p_{PRIMARY}'].notna().sum()) if not diffs.empty else 0
    if k < 2:
        return []
    alpha = 1 - CONFIDENCE
    return ['', f'{k} comparisons: even if no variant differed, at least one {CONFIDENCE:.0%} interval would exclude 0 '
                f'by chance alone up to {1 - CONFIDENCE ** k:.0%} of the time. "Holm p" is the paired t test\'s p '
                f'adjusted for all {k} at once (Holm): a difference is firm for the whole table where it is below '
                f'{alpha:.2f}.']


def _seeds(n):
    return '-' if pd.isna(n) else f'> {MAX_SEEDS}' if math.isinf(n) else str(int(n))


def missing_runs(abl: dict, runs: pd.DataFrame) -> list[str]:
    """A line naming the variants whose seeds are not all in the records yet (a table filled over sittings)."""
    have = runs.groupby('variant')['seed'].apply(set).to_dict()
    seeds = set(abl['seeds'])
    short = [f"{v['name']} ({len(have.get(v['name'], set()) & seeds)} of {len(seeds)})" for v in abl['variants']
             if not seeds <= have.get(v['name'], set())]
    return ['', f'Not complete yet (seeds with a record, of the {len(seeds)} the YAML asks for): {", ".join(short)}.'] \
        if short else []


def markdown(abl: dict, runs: pd.DataFrame, notes: list[str] = ()) -> str:
    order = [v['name'] for v in abl['variants']]
    summary, diffs = per_variant(runs, order), paired(runs, order, abl['baseline'], references(abl))
    lines = [f'# Ablation: {abl["name"]}', '',
             f'Data {abl["data"]}, {abl["img"]} px, {abl["epochs"]} epochs, batch {abl["batch"]}, weights '
             f'{abl["weights"] or "none (from scratch)"}; {len(runs)} runs, seeds '
             f'{sorted(runs["seed"].unique().tolist())}. Metrics: val.py on best.pt, test split, NMS without YOLOv5\'s '
             f'time limit (it drops the rest of a batch on a slow machine).', '',
             '## Per variant (mean ± standard deviation over seeds)', '',
             f'| variant | seeds | params | GFLOPs | P | R | mAP50 | mAP50-95 | train time (min) | inference ms/img | '
             f'val {PRIMARY} rise, last {PLATEAU_EPOCHS} epochs |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for v, r in summary.iterrows():
        size = f"{r['params'] / 1e6:.2f}M | {r['gflops']:.1f}" if pd.notna(r['params']) else '- | -'
        cells = [_pm(r[f'{m}_mean'], r[f'{m}_std']) for m in ('P', 'R', 'mAP50', 'mAP50-95')]
        cells += [_pm(r[f'{m}_mean'], r[f'{m}_std'], 1) for m in ('train_min', 'infer_ms')]
        cells.append(_pm(r['rise_mean'], r['rise_std'], signed=True))
        lines.append(f"| {v} | {int(r['seeds'])} | {size} | {' | '.join(cells)} |")
    lines += ['', f'The last column says how far from a plateau training ended: what the validation {PRIMARY} gained '
                  f'over the last {PLATEAU_EPOCHS} epochs (near 0 on a plateau; "-" for runs of {PLATEAU_EPOCHS} '
                  f'epochs or fewer).']
    lines += missing_runs(abl, runs)
    lines += ['', f'## Against `{abl["baseline"]}`, seed by seed', '',
              f'Each variant\'s seed k is compared with the baseline\'s seed k (same data order and augmentation, same '
              f'initial weights for the layers both models share). Δ = variant - baseline, mean over seeds with its '
              f'{CONFIDENCE:.0%} t interval; the verdict says whether the interval excludes 0. "Seeds to resolve": '
              f'fewest seeds whose interval would exclude 0 if the mean and spread of the differences stayed as '
              f'measured.']
    lines += seeds_plan(abl, runs)
    lines += many_comparisons(diffs)
    lines += ['', '| variant | pairs | Δ mAP50 [95% CI] | verdict | Holm p | Δ mAP50-95 [95% CI] | verdict | Holm p | '
              'seeds to resolve (mAP50-95) |', '|---|---|---|---|---|---|---|---|---|']
    for v, r in diffs.iterrows():
        label = v if r['against'] == abl['baseline'] else f'{v} (against `{r["against"]}`)'
        cells = [f"{_ci(r[f'd_{m}'], r[f'd_{m}_low'], r[f'd_{m}_high'])} | {r[f'verdict_{m}']} | {_p(r[f'holm_{m}'])}"
                 for m in METRICS]
        lines.append(f"| {label} | {r['pairs']} | {' | '.join(cells)} | {_seeds(r['seeds_mAP50-95'])} |")
    if diffs.empty:
        lines.append('| (no variant has a seed in common with the baseline yet) | | | | | | | | |')
    where = runs.groupby(['machine', 'device', 'torch'], dropna=False).size()
    commits = sorted(runs['commit'].dropna().unique())
    days = sorted({d[:10] for d in runs['date'].dropna()})
    when = (f', {days[0]}' + (f' to {days[-1]}' if len(days) > 1 else '')) if days else ''
    machines = '; '.join(f'{m} ({d}, torch {t}): {n} runs' for (m, d, t), n in where.items())
    lines += ['', f'Trained at commit{"s" if len(commits) > 1 else ""} {", ".join(map(short_commit, commits))}'
                  f'{when}; on {machines}.']
    lines += [f'Note: {n}' for n in notes]
    return '\n'.join(lines) + '\n'


def plot_variants(abl: dict, runs: pd.DataFrame, out: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    order = [v['name'] for v in abl['variants'] if v['name'] in set(runs['variant'])]
    diffs = paired(runs, order, abl['baseline'], references(abl))
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(9, 1.4 * len(order) + 4), 4.5))
    for x, v in enumerate(order):
        values = runs.loc[runs['variant'] == v, PRIMARY]
        left.bar(x, values.mean(), color='tab:gray' if v == abl['baseline'] else 'tab:blue', alpha=0.6)
        left.scatter([x] * len(values), values, color='black', s=12, zorder=3)
    left.set_xticks(range(len(order)), order, rotation=30, ha='right')
    left.set_ylabel(f'{PRIMARY} (test split)')
    left.set_title(f'{PRIMARY} per variant\n(bar: mean; dots: seeds)')
    if not diffs.empty:
        ys = np.arange(len(diffs))[::-1]
        mean, low, high = (diffs[f'd_{PRIMARY}{k}'].to_numpy(float) for k in ('', '_low', '_high'))
        for y, m, lo, hi in zip(ys, mean, low, high):
            color = 'tab:green' if lo > 0 else 'tab:red' if hi < 0 else 'tab:gray'
            err = [[m - lo], [hi - m]] if not np.isnan(lo) else None  # one seed: no interval
            right.errorbar([m], [y], xerr=err, fmt='o', color=color, capsize=4)
        right.axvline(0, color='black', lw=0.8)
        right.set_yticks(ys, [v if r == abl['baseline'] else f'{v}\nvs {r}' for v, r in diffs['against'].items()])
    right.set_xlabel(f'Δ {PRIMARY} vs {abl["baseline"]} (paired by seed)')
    right.set_title(f'Paired difference, {CONFIDENCE:.0%} interval\n(green: better, red: worse, gray: no evidence)')
    fig.tight_layout()
    fig.savefig(out / 'map_per_variant.png', dpi=150)
    plt.close(fig)


def plot_epochs(abl: dict, records: list[dict], out: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for v in [v['name'] for v in abl['variants']]:
        curves = [pd.DataFrame(r['epochs']).set_index('epoch')[PRIMARY] for r in records if r['variant'] == v and
                  r['epochs']]
        if not curves:
            continue
        table = pd.concat(curves, axis=1)
        x = table.index + 1
        line, = ax.plot(x, table.mean(axis=1), label=v, marker='o' if len(x) < 10 else None)
        if len(curves) > 1:
            ax.fill_between(x, table.min(axis=1), table.max(axis=1), alpha=0.12, color=line.get_color())
    ax.set_xlabel('epoch')
    ax.set_ylabel(f'{PRIMARY} (val split)')
    ax.set_title(f'{PRIMARY} per epoch (mean over seeds, band = min-max)')
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / 'map_per_epoch.png', dpi=150)
    plt.close(fig)


def write_report(abl: dict, extra=(), command: str = '') -> None:
    """results.md, results.csv and the two figures in the ablation's folder, from its records (and `extra` folders)."""
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
    # the code's state: the report's own folder (its outputs, records being added) does not make it dirty
    header = (f'Report: `{command}` at commit {short_commit(git_commit(PROJECT, ignore=out))}; records in `records/` '
              f'(one per run, '
              f'with the commit, machine, device and torch version that produced it).')
    (out / 'results.md').write_text(markdown(abl, runs, notes).replace('\n\n', f'\n\n{header}\n\n', 1))
    plot_variants(abl, runs, out)
    plot_epochs(abl, records, out)
    print(f'ablate: report in {out}: results.md, results.csv, map_per_variant.png, map_per_epoch.png')
    print((out / 'results.md').read_text())
