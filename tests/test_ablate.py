"""scripts/ablate.py: shards that merge, self-contained records, resuming an interrupted run, fail-fast checks and the
report's paired statistics (checked on hand-made records)."""
import json
import math
import re
import statistics
import subprocess

import numpy as np
import pytest
import yaml
from conftest import PROJECT, PY, SCRIPT_ENV, crash_train, row_epoch

import ablate
from ablation import config as ablation_config
from ablation import prepare
from ablation import records as ablation_records
from ablation import report as ablation_report
from ablation import run as one_run

T_975 = {1: 12.706204736174696, 2: 4.302652729911275, 4: 2.7764451051977987}  # Student t quantiles, from tables


def write_ablation(tmp_path, tree, **over):
    abl = yaml.safe_load((PROJECT / 'configs' / 'ablations' / 'smoke.yaml').read_text())
    abl.update(out=str(tmp_path / 'abl'), tree=str(tree), **over)
    path = tmp_path / 'abl.yaml'
    path.write_text(yaml.safe_dump(abl))
    return path


def ablate_cli(*args, **kw):
    return subprocess.run([PY, str(PROJECT / 'scripts' / 'ablate.py'), *map(str, args)], capture_output=True,
                          text=True, env=SCRIPT_ENV, **kw)


def table_rows(md, first_column):
    """The first markdown table whose header starts with `first_column`: {first cell: {column: cell}}."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f'| {first_column} |'))
    header = [c.strip() for c in lines[start].strip('|').split('|')]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith('| '):
            break
        cells = [c.strip() for c in line.strip('|').split('|')]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def test_two_shards_merge_into_one_report_and_nothing_trains_twice(tree, tmp_path):
    path = write_ablation(tmp_path, tree, epochs=2)
    a, b = tmp_path / 'shard1', tmp_path / 'shard2'
    # the two shards at once, as on two machines: nothing is shared but the YAML
    shards = [subprocess.Popen([PY, str(PROJECT / 'scripts' / 'ablate.py'), 'run', str(path), '--shard', shard,
                                '--out', str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=SCRIPT_ENV) for shard, out in (('1/2', a), ('2/2', b))]
    for shard in shards:
        out, err = shard.communicate()
        assert shard.returncode == 0, out[-3000:] + err[-3000:]
    assert [p.name for p in (a / 'records').iterdir()] == ['baseline-s0.json']  # round robin over the plan
    assert [p.name for p in (b / 'records').iterdir()] == ['eiou-s0.json']
    r = ablate_cli('report', path, '--out', a, '--records', b / 'records')
    assert r.returncode == 0, r.stderr
    md = (a / 'results.md').read_text()
    assert set(table_rows(md, 'variant')) == {'baseline', 'eiou'} and table_rows(md, 'variant')['eiou']['seeds'] == '1'
    paired = table_rows(md.split('## Against')[1], 'variant')
    assert paired['eiou']['pairs'] == '1' and paired['eiou']['verdict'] == 'needs 2+ seeds'
    sha = {json.loads(f.read_text())['train']['init_sha256'] for f in (*a.glob('records/*'), *b.glob('records/*'))}
    assert len(sha) == 1  # two shards built the same initial weights: their runs are paired
    for f in ('results.csv', 'map_per_variant.png', 'map_per_epoch.png'):
        assert (a / f).stat().st_size > 0, f
    for name, out in (('baseline', a), ('eiou', b)):  # a record holds everything the report needs
        rec = json.loads((out / 'records' / f'{name}-s0.json').read_text())
        assert rec['variant'] == name and rec['seed'] == 0 and rec['settings']['epochs'] == 2
        assert [e['epoch'] for e in rec['epochs']] == [0, 1] and 0 <= rec['epochs'][-1]['mAP50-95'] <= 1
        assert set(rec['provenance']) >= {'commit', 'machine', 'device', 'torch', 'date'}
        assert rec['provenance']['device'].startswith('CPU') and re.fullmatch(r'[0-9a-f]{40}(-dirty)?|unknown',
                                                                              rec['provenance']['commit'])
        assert rec['hyp'].get('iou_type') == ('EIoU' if name == 'eiou' else None) and rec['hyp']['lr0'] == 0.01
        assert rec['model']['params'] > 1e6 and rec['train']['seconds'] > 0
        # metrics are what val.py's run() returned: its printed table shows them rounded
        log = (out / 'runs' / f'{name}-s0' / 'val.log').read_text()
        p, rr, m50, m = map(float, re.search(r'^\s+all\s+\d+\s+\d+\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)', log,
                                             re.M).groups())
        assert all(abs(x - y) <= 5e-4 for x, y in zip((p, rr, m50, m), (rec['test'][k] for k in ('P', 'R', 'mAP50',
                                                                                               'mAP50-95'))))
        # paired initial weights: both runs start from the baseline's seed-0 weights
        assert rec['train']['init'] == 'baseline-s0.pt' and len(rec['train']['init_sha256']) == 64
        assert rec['train']['transfer'].startswith('Transferred ')
    # running a shard again trains nothing
    logs = {p: p.stat().st_mtime_ns for p in a.glob('runs/*/train.log')}
    r = ablate_cli('run', path, '--shard', '1/2', '--out', a)
    assert r.returncode == 0 and '1 already done' in r.stdout
    assert {p: p.stat().st_mtime_ns for p in a.glob('runs/*/train.log')} == logs


def test_interrupted_run_resumes_with_every_epoch_once(tree, tmp_path):
    """eiou's train.py dies between its last epoch's (1) results row and its checkpoint (deterministically,
    tests/crash_train.py); `run` resumes it and the run ends as an uninterrupted one: epochs 0, 1 once each, in
    results and record."""
    path = write_ablation(tmp_path, tree, epochs=2, img=64)
    abl = ablation_config.load_ablation(path)
    job = prepare.prepare(abl, ablation_config.plan(abl))
    run = next(r for r in ablation_config.plan(abl) if r.variant['name'] == 'eiou')
    run.folder.mkdir(parents=True)
    crash_train(tree, 'results', 1, *one_run.train_command(run, abl, job.data, 'cpu', str(job.inits[0]))[2:])
    assert one_run.run_state(run) == 'interrupted'
    r = ablate_cli('run', path, '--shard', '2/2')  # eiou's share only: the baseline need not train here
    assert r.returncode == 0, r.stderr[-3000:]
    assert '--resume' in (run.folder / 'train.log').read_text()
    assert [row_epoch(x) for x in (run.folder / 'train' / 'results.csv').read_text().splitlines()[1:]] == [0, 1]
    rec = json.loads((abl['out'] / 'records' / 'eiou-s0.json').read_text())
    assert [e['epoch'] for e in rec['epochs']] == [0, 1]


@pytest.mark.parametrize('variant,message', [
    ({'name': 'bad-loss', 'cfg': 'yolov5n.yaml', 'hyp': {'iou_type': 'EIOU2'}}, "variant bad-loss: .*iou_type='EIOU2'"),
    ({'name': 'typo', 'cfg': 'yolov5n.yaml', 'hyp': {'iou_typ': 'EIoU'}},
     "variant typo: hyp key 'iou_typ' .*did you mean 'iou_type'"),
    ({'name': 'typo-file', 'cfg': 'yolov5n.yaml', 'hyp_file': 'TYPO'}, "variant typo-file: hyp key 'iou_typ' .*TYPO"),
    ({'name': 'no-file', 'cfg': 'yolov5n.yaml', 'hyp_file': 'nope.yaml'}, "variant no-file: hyp file 'nope.yaml' not"),
    ({'name': 'bad-yaml', 'cfg': 'no-such-model.yaml'}, "variant bad-yaml: model YAML 'no-such-model.yaml' not found"),
    ({'name': 'bad-ema', 'cfg': 'configs/models/yolov5s_EMA.yaml', 'scale': 'n', 'hyp': {}},
     r'variant bad-ema: .*layer 18 \(EMA\).*64 input channels divisible by factor 6'),
])
def test_invalid_variant_fails_before_any_training(tree, yolo, tmp_path, capsys, variant, message):
    if variant['name'] == 'bad-ema':  # a pasted YAML with an EMA factor that does not divide the channels
        cfg = yaml.safe_load((PROJECT / 'configs' / 'models' / 'yolov5s_EMA.yaml').read_text())
        cfg['head'][8][3] = [256, 6]
        (tmp_path / 'ema6.yaml').write_text(yaml.safe_dump(cfg))
        variant['cfg'] = str(tmp_path / 'ema6.yaml')
    if variant.get('hyp_file') == 'TYPO':
        (tmp_path / 'typo.yaml').write_text('iou_typ: EIoU\n')
        variant['hyp_file'] = str(tmp_path / 'typo.yaml')
        message = message.replace('TYPO', re.escape(str(tmp_path / 'typo.yaml')))
    path = write_ablation(tmp_path, tree, variants=[{'name': 'baseline', 'cfg': 'yolov5n.yaml'}, variant])
    for command in ('run', 'check'):  # in-process: the CLI's exit code and message, without a new interpreter each
        assert ablate.main([command, str(path)]) == 2
        err = capsys.readouterr().err
        assert re.search(message, err), err
    assert not (tmp_path / 'abl' / 'runs').exists()  # nothing trained


def test_shards_partition_the_plan(tmp_path):
    abl = {'out': tmp_path, 'seeds': [0, 1, 2], 'variants': [{'name': n} for n in 'abcd']}
    runs = ablation_config.plan(abl)
    for n in (1, 2, 3, 5, 12, 13):
        shards = [ablation_config.shard_of(runs, (i, n)) for i in range(1, n + 1)]
        assert sorted(r.name for s in shards for r in s) == sorted(r.name for r in runs)  # each run exactly once
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [r.name for r in ablation_config.shard_of(runs, (2, 5))] == ['a-s1', 'c-s0', 'd-s2']  # runs 1, 6, 11
    for bad in ('0/2', '3/2', 'a/b', '1'):
        with pytest.raises(ablation_config.AblationError, match='expected i/n'):
            ablation_config.parse_shard(bad)


# ---------------------------------------------------------------------------------------- report on hand-made records
MAPS = {'base': [0.30, 0.32, 0.34], 'up': [0.33, 0.36, 0.36], 'same': [0.31, 0.30, 0.35], 'down': [0.25, 0.28, 0.29],
        'two': [0.35, 0.30], 'one': [0.40]}


def hand_made_abl(out):
    abl = {'name': 'hand', 'out': out, 'variants': [{'name': n, 'cfg': 'x.yaml'} for n in MAPS], 'seeds': [0, 1, 2],
           'baseline': 'base', 'data': 'd.yaml', 'img': 320, 'epochs': 3, 'batch': 8, 'weights': '', 'workers': 2,
           'args': [], 'paired_init': True}
    return abl


def hand_made_record(abl, name, seed, value, device='CPU: test'):
    return {'record_version': 1, 'ablation': 'hand', 'variant': name, 'seed': seed, 'baseline': 'base', 'cfg': 'x.yaml',
            'settings': ablation_config.settings(abl), 'hyp': {}, 'model': {'params': 1000, 'gflops': 1.0},
            'test': {'P': 0.5, 'R': 0.4 + seed / 10, 'mAP50': 2 * value, 'mAP50-95': value,
                     'speed_ms': {'inference': 1.0}},
            'train': {'seconds': 60.0 * (seed + 1)},
            'epochs': [{'epoch': e, 'mAP50-95': value * (e + 1) / 3} for e in range(3)],
            'provenance': {'commit': 'a' * 40, 'device': device, 'machine': 'm', 'torch': 't',
                           'date': f'2026-11-2{seed}T10:00:00+00:00'}}


def write_hand_made(abl, folder, names=MAPS):
    for name in names:
        for seed, v in enumerate(MAPS[name]):
            ablation_records.write_record(folder / f'{name}-s{seed}.json', hand_made_record(abl, name, seed, v))


def expected_interval(diffs):
    n, mean, sd = len(diffs), statistics.fmean(diffs), statistics.stdev(diffs)
    half = T_975[n - 1] * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def test_paired_intervals_verdicts_and_seeds_needed_from_hand_made_records(tmp_path):
    abl = hand_made_abl(tmp_path)
    write_hand_made(abl, tmp_path / 'records')
    records, notes = ablation_records.read_records(abl)
    runs = ablation_report.runs_table(records)
    order = list(MAPS)
    diffs = ablation_report.paired(runs, order, 'base')
    for name, verdict in (('up', 'better'), ('same', 'no evidence at 3 seeds'), ('down', 'worse'),
                          ('two', 'no evidence at 2 seeds'), ('one', 'needs 2+ seeds')):
        d = [a - b for a, b in zip(MAPS[name], MAPS['base'])]
        row = diffs.loc[name]
        assert row['pairs'] == len(d) and row['verdict_mAP50-95'] == verdict, name
        if len(d) > 1:
            mean, low, high = expected_interval(d)
            assert (row['d_mAP50-95'], row['d_mAP50-95_low'], row['d_mAP50-95_high']) == \
                pytest.approx((mean, low, high), abs=1e-9), name
            mean50, low50, high50 = expected_interval([2 * x for x in d])
            assert row['d_mAP50_low'] == pytest.approx(low50, abs=1e-9) and row['verdict_mAP50'] == verdict
    # seeds to resolve: the smallest n with t(n-1) sd / sqrt(n) < |mean| (by hand: 3 for up and down, 45 for two)
    assert diffs.loc['up', 'seeds_mAP50-95'] == 3 and diffs.loc['down', 'seeds_mAP50-95'] == 3
    assert diffs.loc['two', 'seeds_mAP50-95'] == 45 and math.isnan(diffs.loc['one', 'seeds_mAP50-95'])
    summary = ablation_report.per_variant(runs, order)
    assert summary.loc['base', 'mAP50-95_mean'] == pytest.approx(0.32)
    assert summary.loc['base', 'mAP50-95_std'] == pytest.approx(0.02)
    assert summary.loc['up', 'train_min_mean'] == pytest.approx(2.0)
    md = ablation_report.markdown(abl, runs)
    rows = table_rows(md.split('## Against')[1], 'variant')
    assert rows['up']['Δ mAP50-95 [95% CI]'] == '+0.030 [+0.005, +0.055]' and rows['up']['verdict'] == 'better'
    assert rows['down']['Δ mAP50-95 [95% CI]'] == '-0.047 [-0.061, -0.032]'
    assert rows['two']['seeds to resolve (mAP50-95)'] == '45' and rows['one']['Δ mAP50-95 [95% CI]'] == '+0.100'
    assert (f'Trained at commit {ablation_report.short_commit("a" * 40)}, 2026-11-20 to 2026-11-22; '
            'on m (CPU: test, torch t): 15 runs.') in md
    first = table_rows(md.split('## Against')[0], 'variant')
    assert first['base']['mAP50-95'] == '0.320 ± 0.020' and first['two']['seeds'] == '2'
    # a table filled over sittings says which rows lack seeds (a variant with no record yet included)
    assert 'Not complete yet (seeds with a record, of the 3 the YAML asks for): two (2 of 3), one (1 of 3).' in md
    abl['variants'].append({'name': 'later', 'cfg': 'x.yaml'})
    assert 'two (2 of 3), one (1 of 3), later (0 of 3).' in ablation_report.markdown(abl, runs)
    ablation_report.plot_variants(abl, runs, tmp_path)
    ablation_report.plot_epochs(abl, records, tmp_path)
    assert (tmp_path / 'map_per_variant.png').stat().st_size > 0 and (tmp_path / 'map_per_epoch.png').exists()


def test_holm_p_values_read_the_verdicts_against_the_number_of_comparisons(tmp_path):
    from scipy import special
    # Holm by hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04 -> running max
    assert ablation_report.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = ablation_report.holm([0.5, math.nan, 0.6])
    assert adjusted[0] == adjusted[2] == 1.0 and math.isnan(adjusted[1])  # capped at 1; a missing p stays missing
    # the paired t test's p from the t distribution's tail as an incomplete beta: t = 3 / (sd / sqrt 5), 4 df
    t = 3 / (statistics.stdev([1, 2, 3, 4, 5]) / math.sqrt(5))
    assert ablation_report.p_value([1, 2, 3, 4, 5]) == pytest.approx(special.betainc(2, 0.5, 4 / (4 + t * t)))
    assert math.isnan(ablation_report.p_value([0.1])) and math.isnan(ablation_report.p_value([0.2, 0.2]))
    abl = hand_made_abl(tmp_path)
    write_hand_made(abl, tmp_path / 'records')
    runs = ablation_report.runs_table(ablation_records.read_records(abl)[0])
    diffs = ablation_report.paired(runs, list(MAPS), 'base')
    p = {v: ablation_report.p_value([a - b for a, b in zip(MAPS[v], MAPS['base'])]) for v in ('up', 'same', 'down',
                                                                                              'two')}
    expected = dict(zip(p, ablation_report.holm(list(p.values()))))
    assert diffs.loc[list(p), 'holm_mAP50-95'].tolist() == pytest.approx(list(expected.values()))
    assert diffs.loc[list(p), 'holm_mAP50'].tolist() == pytest.approx(list(expected.values()))  # mAP50 = 2 x: same t
    md = ablation_report.markdown(abl, runs)
    assert '4 comparisons: even if no variant differed, at least one 95% interval would exclude 0 by chance alone ' \
           'up to 19% of the time.' in md  # 1 - 0.95^4; 'one' has a single pair, no p
    rows = table_rows(md.split('## Against')[1], 'variant')
    assert rows['up']['Holm p'] == f"{expected['up']:.3f}" and rows['one']['Holm p'] == '-'  # mAP50-95's, the last


@pytest.mark.parametrize('n, sd', [(3, 1.0), (5, 0.007)])
def test_detectable_difference_is_found_80_percent_of_the_time_by_simulation(n, sd):
    # oracle: simulate paired experiments of n seeds whose true mean difference is the one returned, and count how
    # often the 95% t interval (critical value from tables) excludes 0; 40000 trials: sd of the rate 0.002
    delta = ablation_report.detectable_difference(sd, n)
    diffs = np.random.default_rng(0).normal(delta, sd, size=(40000, n))
    t = diffs.mean(1) / (diffs.std(1, ddof=1) / math.sqrt(n))
    assert abs(np.mean(abs(t) > T_975[n - 1]) - 0.80) < 0.01
    assert delta / sd == pytest.approx(ablation_report.detectable_difference(1.0, n))  # scales with the spread
    assert math.isnan(ablation_report.detectable_difference(sd, 1))


def test_report_plans_seeds_from_the_baselines_spread(tmp_path):
    abl = hand_made_abl(tmp_path)
    write_hand_made(abl, tmp_path / 'records', ['base', 'up'])
    runs = ablation_report.runs_table(ablation_records.read_records(abl)[0])
    md = ablation_report.markdown(abl, runs)
    # the baseline's seeds 0.30, 0.32, 0.34: standard deviation 0.02; a paired difference of two such runs: 0.02 √2
    line = next(x for x in md.splitlines() if x.startswith("Seeds from the baseline's spread"))
    assert 'standard deviation 0.020 over 3 seeds' in line and line.endswith('the YAML asks for 3.')
    quoted = re.findall(r'(\d\.\d{3}) at (\d+) seeds', line)
    assert [int(n) for _, n in quoted] == [3, 5, 10]
    for value, n in quoted:
        assert float(value) == pytest.approx(ablation_report.detectable_difference(0.02 * math.sqrt(2), int(n)),
                                             abs=5e-4)
    abl['seeds'] = [0, 1, 2, 3, 4, 5, 6]  # the YAML's own count joins the quoted ones
    line = next(x for x in ablation_report.markdown(abl, runs).splitlines() if x.startswith('Seeds from'))
    assert [int(n) for n in re.findall(r'at (\d+) seeds', line)] == [3, 5, 7, 10]
    # one baseline seed: no spread to plan from, and no line
    one = runs[(runs['variant'] != 'base') | (runs['seed'] == 0)]
    assert "Seeds from the baseline's spread" not in ablation_report.markdown(abl, one)


def test_report_says_how_far_from_a_plateau_each_row_ended(tmp_path):
    abl = hand_made_abl(tmp_path)
    slopes = {0: 0.01, 1: 0.03}  # seed 1 still climbing fast; 12 epochs, stored out of order (a resumed run)
    for seed, slope in slopes.items():
        rec = hand_made_record(abl, 'base', seed, 0.3)
        rec['epochs'] = [{'epoch': e, 'mAP50-95': 0.1 + slope * e} for e in reversed(range(12))]
        ablation_records.write_record(tmp_path / 'records' / f'base-s{seed}.json', rec)
    for seed in (0, 1):  # runs as short as the window: no rise to show
        ablation_records.write_record(tmp_path / 'records' / f'up-s{seed}.json', hand_made_record(abl, 'up', seed, 0.3))
    runs = ablation_report.runs_table(ablation_records.read_records(abl)[0])
    rows = table_rows(ablation_report.markdown(abl, runs).split('## Against')[0], 'variant')
    # by hand: 10 epochs of rise at slopes 0.01 and 0.03: 0.1 and 0.3, mean 0.2, sd 0.1414
    assert rows['base']['val mAP50-95 rise, last 10 epochs'] == '+0.200 ± 0.141'
    assert rows['up']['val mAP50-95 rise, last 10 epochs'] == '-'


def test_records_merge_across_folders_and_conflicts_are_named(tmp_path):
    abl = hand_made_abl(tmp_path / 'here')
    write_hand_made(abl, tmp_path / 'here' / 'records', ['base', 'up'])
    write_hand_made(abl, tmp_path / 'gpu-job-7' / 'records', ['same', 'down'])
    records, _ = ablation_records.read_records(abl, [tmp_path / 'gpu-job-7'])
    assert [(r['variant'], r['seed']) for r in records] == [(n, s) for n in ('base', 'up', 'same', 'down')
                                                            for s in range(3)]
    # the same run found twice is fine; two different results for one run are not
    write_hand_made(abl, tmp_path / 'copy', ['up'])
    assert len(ablation_records.read_records(abl, [tmp_path / 'gpu-job-7', tmp_path / 'copy'])[0]) == 12
    other = hand_made_record(abl, 'up', 1, 0.99)
    ablation_records.write_record(tmp_path / 'other' / 'up-s1.json', other)
    with pytest.raises(ablation_config.AblationError, match=r'up seed 1 has two different records: .*up-s1.json and '
                                                            r'.*other/up-s1.json'):
        ablation_records.read_records(abl, [tmp_path / 'other'])
    # records of other settings (here: more epochs) do not mix
    changed = {**hand_made_record(abl, 'down', 5, 0.3), 'settings': {**ablation_config.settings(abl), 'epochs': 30}}
    ablation_records.write_record(tmp_path / 'longer' / 'down-s5.json', changed)
    with pytest.raises(ablation_config.AblationError, match=r"other settings .*'epochs': \(30, 3\)"):
        ablation_records.read_records(abl, [tmp_path / 'longer'])
    with pytest.raises(ablation_config.AblationError, match='records folder .*nowhere not found'):
        ablation_records.read_records(abl, [tmp_path / 'nowhere'])


def test_presets_are_valid(tree, tmp_path):
    for preset in sorted((PROJECT / 'configs' / 'ablations').glob('*.yaml')):
        abl = ablation_config.load_ablation(preset, out=tmp_path / preset.stem)
        abl['tree'] = tree
        prepare.check_variants(abl)


@pytest.mark.parametrize('results', sorted((PROJECT / 'docs' / 'results').glob('*/results.md')),
                         ids=lambda p: p.parent.name)
def test_published_results_are_the_reports_output_on_their_records(results, tmp_path):
    # docs/results/<name>/results.md is what `ablate.py report` writes from the records beside it (no hand edits)
    preset = PROJECT / 'configs' / 'ablations' / f'{results.parent.name}.yaml'
    r = ablate_cli('report', preset, '--out', tmp_path, '--records', results.parent / 'records')
    assert r.returncode == 0, r.stderr
    tables = [md.read_text().split('\n## ', 1)[1] for md in (tmp_path / 'results.md', results)]  # after the header
    assert tables[0] == tables[1]
    assert (results.parent / 'map_per_variant.png').exists() and (results.parent / 'map_per_epoch.png').exists()


def test_a_report_is_dirty_for_changed_code_not_for_its_own_folder(tmp_path):
    # regenerating a published report rewrites its files: that alone must not mark the report's commit dirty
    git = lambda *a: subprocess.run(['git', '-c', 'user.name=t', '-c', 'user.email=t@t', *a], cwd=tmp_path,
                                    check=True, capture_output=True, text=True).stdout.strip()
    (tmp_path / 'out').mkdir()
    (tmp_path / 'code.py').write_text('x = 1\n')
    (tmp_path / 'out' / 'results.md').write_text('old\n')
    git('init', '-q')
    git('add', '.')
    git('commit', '-q', '-m', 'c')
    head = git('rev-parse', 'HEAD')
    (tmp_path / 'out' / 'results.md').write_text('new\n')
    assert ablation_records.git_commit(tmp_path, ignore=tmp_path / 'out') == head
    assert ablation_records.git_commit(tmp_path) == f'{head}-dirty'
    assert ablation_records.git_commit(tmp_path, ignore=tmp_path.parent) == f'{head}-dirty'  # not inside: no effect
    (tmp_path / 'code.py').write_text('x = 2\n')
    assert ablation_records.git_commit(tmp_path, ignore=tmp_path / 'out') == f'{head}-dirty'


def test_write_report_leaves_its_own_folder_out_of_the_dirty_check(monkeypatch, tmp_path):
    preset = PROJECT / 'configs' / 'ablations' / 'bccd-finetune-cpu.yaml'
    published = PROJECT / 'docs' / 'results' / 'bccd-finetune-cpu' / 'records'
    abl = ablation_config.load_ablation(preset, out=tmp_path)
    asked = []
    monkeypatch.setattr(ablation_report, 'git_commit', lambda path, ignore=None: asked.append(ignore) or 'a' * 40)
    monkeypatch.setattr(ablation_report, 'plot_variants', lambda *a: None)
    monkeypatch.setattr(ablation_report, 'plot_epochs', lambda *a: None)
    ablation_report.write_report(abl, [published], command='report')
    assert asked == [tmp_path]


def test_a_copy_names_its_commit_by_project_commit_and_keeps_what_git_said(monkeypatch):
    # a lent GPU machine gets the files without a current .git: the records must still name the files' commit
    here = ablation_records.git_commit(PROJECT)
    monkeypatch.delenv('PROJECT_COMMIT', raising=False)
    assert ablation_records.project_commit() == {'commit': here}
    monkeypatch.setenv('PROJECT_COMMIT', '0123456789abcdef0123456789abcdef01234567')
    assert ablation_records.project_commit() == {'commit': '0123456789abcdef0123456789abcdef01234567',
                                                 'commit_source': 'PROJECT_COMMIT', 'git_here': here}
    monkeypatch.setenv('PROJECT_COMMIT', here)
    assert ablation_records.project_commit() == {'commit': here}
