"""Red team: every route by which a downloaded checkpoint, or a file that comes with one, ran code, corrupted
memory or exhausted it, fed to every stock script that reads that kind of file. Each crafted file is made here
(tests/redteam_payloads.py) with a marker that exists only if the attack ran; each script must stop with an error
naming what it refused, with the marker absent and the interpreter alive.
"""
import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import PROJECT, PY, SCRIPT_ENV, crash_train, run_script, tree_lines

import redteam_payloads as payloads

DRIVER = PROJECT / 'tests' / 'redteam_driver.py'
ROUTES = [r.__name__ for r in payloads.CHECKPOINT_ROUTES]


def stock_jobs(tree, weights, tiny_data, seg_data, cls_data, runs):
    """{script: argv} of every stock entry point that reads a .pt, as a user runs it on a downloaded file."""
    images, cls_image = tiny_data.parent / 'images' / 'test', next((cls_data / 'test' / 'disc').glob('*.png'))
    fit = ['--img', 64, '--epochs', 1, '--batch', 4, '--workers', 0, '--project', runs, '--exist-ok']
    resume = runs / 'resume' / weights.stem / 'weights' / 'last.pt'  # a downloaded last.pt, no opt.yaml beside it
    resume.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(weights, resume)
    return {
        'train.py': ['--weights', weights, '--cfg', '', '--data', tiny_data, *fit],
        'train.py --resume': ['--resume', resume, '--data', tiny_data],
        'segment/train.py': ['--weights', weights, '--cfg', '', '--data', seg_data, *fit],
        'classify/train.py': ['--model', weights, '--data', cls_data, '--img', 32, '--epochs', 1, '--batch-size', 4,
                              '--workers', 0, '--project', runs],
        'val.py': ['--weights', weights, '--data', tiny_data, '--img', 64, '--project', runs],
        'segment/val.py': ['--weights', weights, '--data', seg_data, '--img', 64, '--project', runs],
        'classify/val.py': ['--weights', weights, '--data', cls_data, '--img', 32],
        'detect.py': ['--weights', weights, '--source', images, '--img', 64, '--project', runs],
        'segment/predict.py': ['--weights', weights, '--source', images, '--img', 64, '--project', runs],
        'classify/predict.py': ['--weights', weights, '--source', cls_image, '--img', 32, '--project', runs],
        'export.py': ['--weights', weights, '--include', 'torchscript', '--img', 64],
        'benchmarks.py': ['--weights', weights, '--data', tiny_data, '--img', 64, '--hard-fail'],
        'hub': [weights]}


def run_driver(tree, jobs, folder):
    """Run the jobs in the driver; a job that kills the interpreter is recorded as such and the rest go on."""
    results, done = folder / 'results.jsonl', {}
    while len(done) < len(jobs):
        todo = [i for i in range(len(jobs)) if i not in done]
        (folder / 'jobs.json').write_text(json.dumps([jobs[i] for i in todo], default=str))
        results.write_text('')
        r = subprocess.run([PY, str(DRIVER), str(tree), str(folder / 'jobs.json'), str(results)], cwd=tree,
                           env=SCRIPT_ENV, capture_output=True, text=True, timeout=1200)
        lines = [json.loads(line) for line in results.read_text().splitlines()]
        for line in lines:
            if 'error' in line:
                done[todo[line['job']]] = line
        started = [todo[line['job']] for line in lines if 'started' in line and todo[line['job']] not in done]
        if started:  # the interpreter died in this job
            done[started[0]] = {'error': f'interpreter died ({r.returncode}): {r.stderr[-300:]}', 'crashed': True,
                                'marker': Path(jobs[started[0]]['marker']).exists()}
        elif r.returncode:
            raise AssertionError(f'driver failed ({r.returncode}):\n{r.stderr[-3000:]}')
    return [done[i] for i in range(len(jobs))]


@pytest.fixture(scope='module')
def crafted(yolo, tmp_path_factory):
    """{route: (file, marker, what the refusal names)} for every checkpoint route."""
    folder = tmp_path_factory.mktemp('crafted')
    out = {}
    for route in payloads.CHECKPOINT_ROUTES:
        marker = folder / f'{route.__name__}.ran'
        path, named = route(yolo, marker, folder)
        out[route.__name__] = (path, marker, named)
    return out


@pytest.fixture(scope='module')
def stock_results(tree, crafted, tiny_data, seg_data, cls_data, tmp_path_factory):
    """{(route, script): result} of every crafted checkpoint through every stock script, in one driver run."""
    folder = tmp_path_factory.mktemp('stock')
    keys, jobs = [], []
    for route, (path, marker, _) in crafted.items():
        for script, argv in stock_jobs(tree, path, tiny_data, seg_data, cls_data, folder / 'runs').items():
            keys.append((route, script))
            jobs.append({'script': script.split()[0], 'argv': [str(a) for a in argv], 'marker': str(marker)})
    return dict(zip(keys, run_driver(tree, jobs, folder)))


@pytest.mark.parametrize('route', ROUTES)
def test_every_stock_script_refuses_the_route(stock_results, crafted, route):
    named = crafted[route][2]
    failures = {script: r for (rt, script), r in stock_results.items() if rt == route and
                (r['marker'] or r.get('crashed') or not r['error'] or named not in r['error'])}
    assert not failures, f'{route}: expected every script to refuse naming {named!r}:\n' + \
        '\n'.join(f'  {s}: {r}' for s, r in failures.items())
    assert all('refused' in r['error'] or 'declares' in r['error'] for (rt, _), r in stock_results.items()
               if rt == route)


@pytest.mark.parametrize('route', ROUTES)
def test_the_loader_refuses_the_route(yolo, crafted, route):
    from utils.compat import load_checkpoint
    from utils.safe_load import UntrustedCheckpoint
    path, marker, named = crafted[route]
    with pytest.raises(UntrustedCheckpoint) as e:
        load_checkpoint(path)
    assert named in str(e.value) and 'YOLOV5_TRUST_CHECKPOINTS=1' in str(e.value)
    assert not marker.exists()


def test_process_wide_state_is_unchanged_by_refused_files(yolo, crafted):
    import numpy as np
    from torchvision.transforms import InterpolationMode
    from utils.compat import load_checkpoint
    for route in ('enum_state', 'numpy_shared_dtype'):
        with pytest.raises(Exception):
            load_checkpoint(crafted[route][0])
    assert InterpolationMode.BILINEAR.value == 'bilinear' and np.dtype('f8').byteorder == '='


def test_the_allocation_bomb_allocates_nothing(tree, crafted):
    # peak memory of a fresh interpreter that loads the 830-byte file asking for 6.4 GB
    code = ('import resource, sys; sys.path.insert(0, "."); from utils.compat import load_checkpoint\n'
            'before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n'
            f'try: load_checkpoint({str(crafted["allocation_bomb"][0])!r})\nexcept Exception as e: print(e)\n'
            'print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)')
    r = subprocess.run([PY, '-c', code], cwd=tree, capture_output=True, text=True, env=SCRIPT_ENV)
    assert 'torch.nn.modules.linear.Linear' in r.stdout, r.stderr[-2000:]
    assert int(r.stdout.split()[-1]) < 100  # MB grown while loading


# --------------------------------------------------------------------- files that load quietly, used later
@pytest.mark.parametrize('where', ['activation', 'argument', 'module'])
def test_a_clean_checkpoint_with_a_poisoned_model_yaml(tree, yolo, tiny_data, seg_data, cls_data, tmp_path, where):
    # it loads (nothing in it is refused), and every script that rebuilds the model from its yaml refuses the text
    marker = tmp_path / 'ran'
    path, named = payloads.poisoned_model_yaml(yolo, marker, tmp_path, where)
    all_jobs = stock_jobs(tree, path, tiny_data, seg_data, cls_data, tmp_path / 'runs')
    rebuild = ('train.py', 'train.py --resume', 'segment/train.py')
    scripts = [*rebuild, 'val.py', 'detect.py', 'hub']  # the others use the pickled model, never its yaml
    jobs = [{'script': s.split()[0], 'argv': [str(a) for a in all_jobs[s]], 'marker': str(marker)} for s in scripts]
    results = dict(zip(scripts, run_driver(tree, jobs, tmp_path)))
    for script, r in results.items():
        assert not r['marker'] and not r.get('crashed'), (script, r)
        if script in rebuild:
            assert r['error'] and all(n in r['error'] for n in named), (script, r)
        else:
            assert r['error'] is None, (script, r)


@pytest.mark.parametrize('escape', ['absolute', 'relative'])
def test_class_names_place_crops_only_inside_the_run(tree, yolo, tiny_data, tmp_path, escape):
    # a checkpoint's class name is a folder under crops/, whatever path it spells (v7.0 wrote crops anywhere)
    from utils.safe_paths import path_part
    outside = tmp_path / 'outside'
    runs = tmp_path / 'deep' / 'runs'  # crops/<name> is runs/exp/crops/<name>: '../../../../outside' climbs to it
    name = str(outside) if escape == 'absolute' else '../../../../outside'
    weights = payloads.class_named(yolo, name, tmp_path)
    images = tiny_data.parent / 'images' / 'test'
    run_script(tree, 'detect.py', '--weights', weights, '--source', images, '--img', 64, '--save-crop', '--nosave',
               '--project', runs, '--name', 'exp')
    assert not outside.exists()
    crops = sorted((runs / 'exp' / 'crops').rglob('*.jpg'))
    assert crops and {c.parent for c in crops} == {runs / 'exp' / 'crops' / path_part(name)}, crops[:3]
    assert len(crops) >= len(list(images.glob('*')))  # every image gave its crops, only the folder changed


def test_a_class_name_becomes_one_folder_name(yolo):
    from utils.safe_paths import path_part
    assert path_part('RBC') == 'RBC' and path_part('traffic light') == 'traffic light'
    assert path_part('/etc/x') == '_etc_x' and path_part('../..') == '.._..' and path_part('a/b') == 'a_b'
    assert [path_part(n) for n in ('', '.', '..', 7)] == ['_', '_.', '_..', '7']


def test_resume_takes_only_data_from_a_downloaded_checkpoint(tree, yolo, tiny_data, tmp_path):
    # a real run's last.pt whose options were rewritten: evolve with a shell-breaking bucket, a data YAML that
    # downloads with code, a run folder elsewhere; opt.yaml gone, as when last.pt is shared alone
    from utils.compat import load_checkpoint
    run = tmp_path / 'runs' / 'r'
    crash_train(tree, 'checkpoint', 0, '--data', tiny_data, '--cfg', 'yolov5n.yaml', '--weights', '', '--img', 64,
                '--epochs', 2, '--batch', 8, '--workers', 0, '--project', run.parent, '--name', run.name, '--noval',
                '--noplots')
    marker, elsewhere, last = tmp_path / 'ran', tmp_path / 'elsewhere', run / 'weights' / 'last.pt'
    evil_data = tmp_path / 'evil.yaml'
    evil_data.write_text(f'path: {tmp_path}/none\ntrain: a\nval: a\nnames: [x]\n'
                         f'download: open({str(marker)!r}, "w")\n')
    ckpt = load_checkpoint(last)
    ckpt['opt'].update(evolve=1, bucket=f'x; touch {marker}; #', data=str(evil_data), save_dir=str(elsewhere),
                       project=str(elsewhere), epochs=2, batch_size=8)
    torch.save(ckpt, last)
    (run / 'opt.yaml').unlink()
    r = run_script(tree, 'train.py', '--resume', last, '--data', tiny_data)
    assert not marker.exists() and not elsewhere.exists()
    log = r.stdout + r.stderr
    assert 'taken from the command line instead' in log and 'bucket' in log and 'data' in log, log[-2000:]
    assert load_checkpoint(last)['epoch'] == -1  # resumed in its own folder and finished
    assert [int(float(x.split(',')[0])) for x in (run / 'results.csv').read_text().splitlines()[1:]] == [0, 1]


def test_a_crafted_label_cache_is_refused_and_rebuilt(tree, yolo, tiny_data, tmp_path):
    from utils.label_cache import load_label_cache
    data = tmp_path / 'data'
    shutil.copytree(tiny_data.parent, data)
    yaml = data / 'data.yaml'
    yaml.write_text(tiny_data.read_text().replace(str(tiny_data.parent), str(data)))
    marker = tmp_path / 'ran'
    cache = payloads.label_cache(marker, data / 'labels' / 'val.cache')
    weights = payloads.clean_checkpoint(yolo, tmp_path / 'w.pt')
    r = run_script(tree, 'val.py', '--weights', weights, '--data', yaml, '--img', 64, '--project', tmp_path)
    assert not marker.exists()
    assert f'label cache {cache} refused: it needs io.open' in r.stdout + r.stderr
    rebuilt = load_label_cache(cache)  # the scan written again, in YOLOv5's format, read as plain data
    assert rebuilt['version'] == 0.6 and len([k for k in rebuilt if k.endswith('.jpg')]) == 4
    import numpy as np
    assert np.load(cache, allow_pickle=True).item().keys() == rebuilt.keys()


def test_onnx_metadata_is_read_as_a_literal(tree, yolo, tiny_data, tmp_path):
    import onnx
    weights, marker = payloads.clean_checkpoint(yolo, tmp_path / 'w.pt'), tmp_path / 'ran'
    run_script(tree, 'export.py', '--weights', weights, '--include', 'onnx', '--img', 64)
    model = onnx.load(str(weights.with_suffix('.onnx')))
    names = next(p for p in model.metadata_props if p.key == 'names')
    assert names.value == "{0: 'class0', 1: 'class1'}"  # export writes a literal
    names.value = f"(open({str(marker)!r}, 'w'), {{0: 'a', 1: 'b'}})[1]"
    onnx.save(model, str(tmp_path / 'evil.onnx'))
    for script in ('detect.py', 'val.py'):
        argv = ['--source', tiny_data.parent / 'images' / 'test'] if script == 'detect.py' else ['--data', tiny_data]
        args = [script, '--weights', tmp_path / 'evil.onnx', '--img', 64, *argv, '--project', tmp_path]
        r = subprocess.run([PY, *map(str, args)], cwd=tree, env=SCRIPT_ENV, capture_output=True, text=True)
        assert r.returncode != 0 and not marker.exists()
        assert "metadata 'names' is not a Python literal" in r.stderr, r.stderr[-2000:]


@pytest.mark.parametrize('download', ['open({marker!r}, "w")', 'bash -c "touch {marker}"'])
def test_a_data_yaml_runs_no_download_code_of_its_own(tree, tmp_path, download):
    import yaml
    marker = tmp_path / 'ran'
    data = tmp_path / 'post.yaml'
    data.write_text(yaml.safe_dump({'path': str(tmp_path / 'missing'), 'train': 'images', 'val': 'images',
                                    'names': ['a'], 'download': download.format(marker=str(marker))}))
    args = ['train.py', '--data', data, '--weights', '', '--cfg', 'yolov5n.yaml', '--img', 64, '--project', tmp_path]
    r = subprocess.run([PY, *map(str, args)], cwd=tree, env=SCRIPT_ENV, capture_output=True, text=True)
    assert r.returncode != 0 and not marker.exists()
    assert f'{data} downloads its dataset with code' in r.stderr and 'YOLOV5_TRUST_DATA_SCRIPTS=1' in r.stderr


def test_upstream_data_yamls_keep_their_download_code(yolo):
    from utils.dataset_scripts import check_download_script
    check_download_script(yolo / 'data' / 'coco.yaml', 'from utils.general import download', yolo)  # allowed
    with pytest.raises(PermissionError, match='runs only for the data YAMLs shipped in'):
        check_download_script(yolo / 'post' / 'coco.yaml', 'x', yolo)


def test_a_torchscript_file_says_it_runs_code(yolo, tmp_path, caplog):
    from models.common import DetectMultiBackend
    path = tmp_path / 'm.torchscript'
    torch.jit.script(torch.nn.Conv2d(3, 3, 1)).save(str(path), _extra_files={'config.txt': ''})
    # YOLOv5's logger does not propagate to the root one, and in-process tests before may have quieted it
    caplog.set_level(logging.WARNING, logger='yolov5')
    logger = logging.getLogger('yolov5')
    logger.addHandler(caplog.handler)
    try:
        DetectMultiBackend(str(path))
    finally:
        logger.removeHandler(caplog.handler)
    assert 'a TorchScript file runs its own code' in caplog.text


# --------------------------------------------------------------------------------------- the tree as a whole
def code_lines(tree, pattern):
    """tree_lines, in code only (not in the comment part of a line)."""
    return [x for x in tree_lines(tree, pattern) if path_line_matches(tree, x, pattern, code_only=True)]


def test_no_eval_exec_or_shell_interpolation_in_the_tree(tree):
    evals = code_lines(tree, r'(?<![\w.])eval\(')
    execs = code_lines(tree, r'(?<![\w.])exec\(')
    assert evals == [], evals
    assert len(execs) == 1 and execs[0].startswith('utils/general.py:')  # a data YAML's download code, gated:
    general = (tree / 'utils' / 'general.py').read_text().splitlines()
    assert 'check_download_script' in general[int(execs[0].split(':')[1]) - 2]
    systems = code_lines(tree, r'os\.system\(')
    assert all(path_line_matches(tree, x, r"os\.system\('[^'{}]*'\)") for x in systems), systems
    shells = tree_lines(tree, r'shell=True')
    assert not [x for x in shells if path_line_matches(tree, x, r"\bf['\"]|\.format\(|%")], shells


def path_line_matches(tree, where, pattern, code_only=False):
    path, line = where.rsplit(':', 1)
    text = (Path(tree) / path).read_text().splitlines()[int(line) - 1]
    return re.search(pattern, text.split('#', 1)[0] if code_only else text) is not None


def test_every_checkpoint_load_goes_through_the_safe_loader(tree):
    calls = tree_lines(tree, r'\btorch\.load\(')
    assert calls and all(c.startswith('utils/safe_load.py:') for c in calls), calls
    assert not code_lines(tree, r'allow_pickle\s*=\s*True')
