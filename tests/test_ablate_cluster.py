"""scripts/ablate.py on real engines: a local Ray with 2 CPUs and 2 declared GPUs, a Ray cluster that loses a node
(ray.cluster_utils.Cluster), and a single-node SLURM started here from Debian's packages (munge, slurmctld, slurmd;
two GPUs declared through gres). The grid is the smoke ablation's; its train step is a stand-in (tests/standin/:
instant, deterministic metrics, event files the tests wait for), but in one test that trains it for real on Ray.

A missing engine skips with its reason; CI sets ABLATE_ENGINES=required, where it fails instead."""
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import yaml
from conftest import PROJECT, PY, SCRIPT_ENV

from ablation import config
from standin.events import Timeout, wait_exit, wait_for_files
from ablation.executors import slurm as slurm_executor

REQUIRED = os.environ.get('ABLATE_ENGINES') == 'required'
# drivers, workers, array tasks and daemons run side by side on 2 cores: one thread each, no spinning OpenMP threads
ENV = {**SCRIPT_ENV, 'OMP_NUM_THREADS': '1'}
STANDIN = PROJECT / 'tests' / 'standin'
WAIT = 90  # seconds any one wait on an engine may take before the test fails


def need(ok, reason):
    if not ok:
        (pytest.fail if REQUIRED else pytest.skip)(reason)


def wait_event(folder, kind, what):
    """The stand-in's `kind` events once there is one: blocks until a file lands in its events folder."""
    try:
        return wait_for_files(folder, lambda: events(folder, kind), what, WAIT)
    except Timeout as e:
        pytest.fail(str(e))


def wait_dead(pid, what):
    try:
        wait_exit(pid, what, WAIT)
    except Timeout as e:
        pytest.fail(str(e))


def ray_env(**extra):
    # a Ray of the test's own: no token written to ~/.ray; GPUs declared, none masked (Ray refuses 2 GPUs in '')
    env = {**ENV, 'RAY_AUTH_MODE': 'disabled', **extra}
    env.pop('CUDA_VISIBLE_DEVICES')
    return env


def ablate(*args, env=None, **kw):
    return subprocess.run([PY, str(PROJECT / 'scripts' / 'ablate.py'), *map(str, args)], capture_output=True,
                          text=True, env=env or ENV, **kw)


def ablate_bg(*args, env):
    """The driver as a terminal starts it, Ctrl-C raising KeyboardInterrupt: a suite started in the background by a
    shell without job control (`cmd &` in a script) has SIGINT ignored, which a child inherits; a handled SIGINT is
    reset to the default by exec, and Python then installs its own handler."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen([PY, str(PROJECT / 'scripts' / 'ablate.py'), *map(str, args)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.fixture(scope='module')
def standin(tree, tmp_path_factory):
    """A tree whose train.py and val.py are the stand-ins (the rest links to the built tree); control(name,
    **settings) writes its standin.json for the next runs and returns their events folder."""
    folder = tmp_path_factory.mktemp('standin')
    dest = folder / 'tree'
    dest.mkdir()
    for entry in tree.iterdir():
        if entry.name not in ('train.py', 'val.py', '.git'):
            (dest / entry.name).symlink_to(entry)
    for script in ('train.py', 'val.py', 'events.py'):
        shutil.copy(STANDIN / script, dest / script)

    def control(name, **settings):
        events = folder / f'events-{name}'
        events.mkdir()
        (dest / 'standin.json').write_text(json.dumps({'events': str(events), **settings}))
        return events

    return SimpleNamespace(path=dest, control=control)


@pytest.fixture(scope='module')
def local_report(standin, tmp_path_factory):
    """results.md of the stand-in smoke grid run by the local executor (threads on devices 0 and 1): the table every
    engine's records must give."""
    folder = tmp_path_factory.mktemp('local')
    ev = standin.control('local', barrier=2)
    ok(ablate('run', ablation_yaml(folder, standin.path, 'local', device=[0, 1])))
    assert len(events(ev)) == 2
    return folder / 'local' / 'results.md'


def ablation_yaml(tmp_path, tree, name, **over):
    """The smoke ablation (configs/ablations/smoke.yaml) with its output in tmp_path and `over` on top."""
    abl = yaml.safe_load((PROJECT / 'configs' / 'ablations' / 'smoke.yaml').read_text())
    abl.update(out=str(tmp_path / name), tree=str(tree), **over)
    path = tmp_path / f'{name}.yaml'
    path.write_text(yaml.safe_dump(abl))
    return path


def events(folder, kind='start'):
    return sorted((json.loads(f.read_text()) for f in Path(folder).glob(f'*.{kind}.json')), key=lambda e: e['time'])


def records(out):
    return {f.stem: json.loads(f.read_text()) for f in (Path(out) / 'records').glob('*.json')}


def dead(pid):
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def ok(r):
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


# ------------------------------------------------------------------------------------------------------------ Ray
def ray_available():
    try:
        import ray  # noqa: F401
        return True
    except ImportError:
        return False


def test_ray_two_gpus_a_killed_worker_and_the_same_table_as_local(standin, local_report, tmp_path):
    """The smoke grid on a local Ray with 2 CPUs and 2 declared GPUs: both runs train at once, on GPUs 0 and 1; one
    run's worker is killed mid-run and Ray's retry resumes it; the report is the local executor's; a second `run`
    trains nothing."""
    need(ray_available(), 'Ray is not installed (make setup-ray)')
    path = ablation_yaml(tmp_path, standin.path, 'ray', device=[0, 1])
    ev = standin.control('ray', barrier=2, hold=True)
    driver = ablate_bg('run', path, '--executor', 'ray',
                       env=ray_env(RAY_OVERRIDE_RESOURCES=json.dumps({'CPU': 2, 'GPU': 2})))
    (held,) = wait_event(ev, 'held', 'a run to hold')
    os.kill(held['ppid'], signal.SIGKILL)  # the Ray worker running the held run
    out, err = driver.communicate(timeout=WAIT)
    assert driver.returncode == 0, out[-3000:] + err[-3000:]

    starts = events(ev)
    first, second = starts[:2]
    assert {first['cuda'], second['cuda']} == {'0', '1'} and first['device'] == second['device'] == '0'
    assert second['time'] < min(e['time'] for e in events(ev, 'end'))  # they overlapped (the barrier held both)
    again = [e for e in starts if e['run'] == held['run']]
    assert [e['resume'] for e in again] == [False, True] and again[1]['cuda'] in ('0', '1')
    assert dead(held['pid'])  # no orphan training beside the retry
    recs = records(tmp_path / 'ray')
    assert sorted(recs) == ['baseline-s0', 'eiou-s0'] and recs[held['run']]['train']['attempts'] == 2
    assert all(r['provenance']['executor'].startswith('ray node ') for r in recs.values())
    assert {r['provenance']['cuda_visible_devices'] for r in recs.values()} <= {'0', '1'}
    assert tables(tmp_path / 'ray' / 'results.md') == tables(local_report)
    # a re-run trains nothing (and starts no Ray)
    r = ok(ablate('run', path, '--executor', 'ray', env=ray_env()))
    assert '2 already done' in r.stdout and len(events(ev)) == len(starts)


@pytest.mark.slow  # a minute of CPU: beyond `make test`'s budget for these tests, in `make test-all`
def test_smoke_ablation_trains_for_real_on_a_local_ray(tree, tmp_path):
    """configs/ablations/smoke.yaml as it is (device: cpu) through a local Ray of its own: each run a task asking for
    cpus_per_run CPUs, train.py and val.py for real in a Ray worker; records like a local run's."""
    need(ray_available(), 'Ray is not installed (make setup-ray)')
    path = ablation_yaml(tmp_path, tree, 'smoke')
    ok(ablate('run', path, '--executor', 'ray', env=ray_env()))
    recs = records(tmp_path / 'smoke')
    assert sorted(recs) == ['baseline-s0', 'eiou-s0']
    for rec in recs.values():
        assert rec['provenance']['executor'].startswith('ray node ') and rec['provenance']['device'].startswith('CPU')
        assert [e['epoch'] for e in rec['epochs']] == [0] and 0 <= rec['test']['mAP50-95'] <= 1
        assert rec['train']['transfer'].startswith('Transferred ') and rec['train']['init'] == 'baseline-s0.pt'
    assert set(table_rows(tmp_path / 'smoke' / 'results.md')) == {'baseline', 'eiou'}


def table_rows(results_md):
    return {row[0]: row for row in tables(results_md)[2:] if len(row) > 7}


def tables(results_md):
    """The two tables of a report, without the column that differs from run to run (training time)."""
    body = Path(results_md).read_text().split('\n## ', 1)[1].split('\nTrained at')[0]
    rows = [[c.strip() for c in line.split('|')[1:-1]] for line in body.splitlines() if line.startswith('|')]
    timed = rows[0].index('train time (min)')
    return [row[:timed] + row[timed + 1:] if len(row) == len(rows[0]) else row for row in rows]


def test_ray_cluster_loses_a_node_mid_run_a_failed_run_is_reported_and_ctrl_c_cancels(standin, tmp_path,
                                                                                     monkeypatch):
    """A Ray cluster of one GPU node: the node dies under a run, whose task Ray retries on a node added afterwards
    (resuming from last.pt: the folder is shared here); the other run's train.py fails and comes back as a failed
    run, with the report written. Then Ctrl-C on a second `run` cancels its task: its train.py stops, no record."""
    need(ray_available(), 'Ray is not installed (make setup-ray)')
    from ray.cluster_utils import Cluster
    for k, v in ray_env().items():
        monkeypatch.setenv(k, v)  # the nodes' environment (started from here)
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    cluster = Cluster(initialize_head=True, head_node_args={'num_cpus': 0})  # the head trains nothing
    try:
        doomed = cluster.add_node(num_cpus=1, num_gpus=1)
        path = ablation_yaml(tmp_path, standin.path, 'cluster', device=[0])
        ev = standin.control('node', hold=True, fail=['eiou-s0'])
        driver = ablate_bg('run', path, '--executor', 'ray', '--address', cluster.address, env=ray_env())
        (held,) = wait_event(ev, 'held', 'a run to hold')
        # the node goes mid-run (its raylet stopped: Ray knows at once; a node that crashes is declared dead after
        # Ray's health checks, some 15 s, and then the same follows)
        cluster.remove_node(doomed, allow_graceful=True)
        spare = cluster.add_node(num_cpus=1, num_gpus=1)
        out, err = driver.communicate(timeout=WAIT)
        assert driver.returncode == 1, out[-3000:] + err[-3000:]  # one run failed; the driver did not crash
        assert held['run'] == 'baseline-s0' and 'FAILED eiou-s0' in out and 'failing eiou-s0 on purpose' in err
        assert [e['resume'] for e in events(ev) if e['run'] == 'baseline-s0'] == [False, True]
        assert dead(held['pid'])
        rec = records(tmp_path / 'cluster')
        assert list(rec) == ['baseline-s0'] and rec['baseline-s0']['provenance']['executor'] == \
            f'ray node {spare.node_id}'
        assert '| baseline | 1 |' in (tmp_path / 'cluster' / 'results.md').read_text()

        ev = standin.control('ctrl-c', hold=True)  # eiou-s0 trains again (it has no record) and holds
        driver = ablate_bg('run', path, '--executor', 'ray', '--address', cluster.address, env=ray_env())
        (held,) = wait_event(ev, 'held', 'a run to hold')
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=WAIT)
        assert driver.returncode == 130 and 'cancelled 1 of 1 Ray task' in out, out[-3000:] + err[-3000:]
        wait_dead(held['pid'], 'the cancelled run to stop')
        assert list(records(tmp_path / 'cluster')) == ['baseline-s0']
    finally:
        cluster.shutdown()


# ---------------------------------------------------------------------------------------------------------- SLURM
def free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


SLURM_CONF = '''ClusterName=ablatetest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={d}/munge.socket
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={d}/jobcomp.txt
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
NodeName=ablnode NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ablnode Default=YES MaxTime=INFINITE State=UP
'''
# two GPUs: gres needs character devices, any will do (nothing opens them)
GRES_CONF = 'NodeName=ablnode Name=gpu File=/dev/null\nNodeName=ablnode Name=gpu File=/dev/zero\n'


@pytest.fixture
def slurm_cluster(tmp_path_factory):
    """A single-node SLURM of the test's own (its config, ports, munge key and socket in a temporary folder),
    started by hand without systemd: munged, slurmctld -D and slurmd -D; yields the environment that reaches it."""
    need(os.geteuid() == 0, 'a SLURM of its own needs root (slurmd runs jobs as their user)')
    missing = [b for b in ('munged', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'sinfo') if not shutil.which(b)]
    need(not missing, f'SLURM is not installed (no {", ".join(missing)}: apt-get install slurmctld slurmd '
                      'slurm-client munge)')
    d = tmp_path_factory.mktemp('slurm')  # short: munge's socket path must fit in 108 bytes
    (d / 'state').mkdir(), (d / 'spool').mkdir()
    (d / 'munge.key').write_bytes(os.urandom(1024))
    (d / 'munge.key').chmod(0o600)
    (d / 'slurm.conf').write_text(SLURM_CONF.format(d=d, ctld_port=free_port(), d_port=free_port()))
    (d / 'gres.conf').write_text(GRES_CONF)
    env = {**ENV, 'SLURM_CONF': str(d / 'slurm.conf')}
    daemons = []
    try:
        for cmd in (['munged', '-F', '--force', f'--key-file={d}/munge.key', f'--socket={d}/munge.socket',
                     f'--pid-file={d}/munged.pid', f'--log-file={d}/munged.log', f'--seed-file={d}/munged.seed'],
                    ['slurmctld', '-D', '-i'], ['slurmd', '-D', '-N', 'ablnode']):
            with open(d / f'{cmd[0]}.out', 'w') as log:
                daemons.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
            if cmd[0] == 'munged':  # its socket, before SLURM's daemons authenticate through it
                wait_for_files(d, lambda: (d / 'munge.socket').exists() or daemons[0].poll() is not None, 'munged',
                               WAIT)
        # SLURM says when it is ready: a job that runs once the node has registered (sbatch itself retries while
        # slurmctld starts listening)
        ready = subprocess.run(['sbatch', '--wait', '--output=/dev/null', '--wrap=true'], env=env, capture_output=True,
                               text=True, timeout=WAIT)
        assert ready.returncode == 0, ready.stderr + ''.join((d / f'{p.args[0]}.out').read_text()[-1000:]
                                                             for p in daemons)
        dead_ones = [p.args[0] for p in daemons if p.poll() is not None]
        assert not dead_ones, f'{dead_ones} exited: ' + ''.join((d / f'{n}.out').read_text()[-2000:] for n in dead_ones)
        yield SimpleNamespace(env=env, dir=d)
    finally:
        subprocess.run(['scancel', '--user', 'root'], env=env, capture_output=True)
        for p in reversed(daemons):
            p.terminate()
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_job(job, env):
    """Block until SLURM job `job` (every task of an array) has ended: a job that depends on it, waited for."""
    r = subprocess.run(['sbatch', '--wait', f'--dependency=afterany:{job}', '--output=/dev/null', '--wrap=true'],
                       env=env, capture_output=True, text=True, timeout=3 * WAIT)
    assert r.returncode == 0, r.stderr


def completed_tasks(folder, job):
    """SLURM's own record of each array task that ended (jobcomp/filetxt): {task: {JobState, StartTime, EndTime}}."""
    import re
    text = (folder / 'jobcomp.txt').read_text() if (folder / 'jobcomp.txt').exists() else ''
    rows = [dict(re.findall(r'(\w+)=(\S*)', line)) for line in text.splitlines()]
    return {int(r['ArrayTaskId']): r for r in rows if r.get('ArrayJobId') == job}


def test_slurm_array_of_the_smoke_ablation(standin, local_report, tmp_path, slurm_cluster):
    """`ablate.py slurm --submit --parallel 1` on the smoke ablation: one array task per run (`run --index K`), each
    given a GPU through gres, never two at once (%1), records merged by `report` into the table a local run gives;
    submitting again submits nothing, and a missing record is the only index of the next array, which
    `run --executor slurm` submits and waits for."""
    import re
    env = slurm_cluster.env
    path = ablation_yaml(tmp_path, standin.path, 'slurm', device=[0, 1])
    ev = standin.control('slurm')
    r = ok(ablate('slurm', path, '--parallel', 1, '--submit', env=env))
    assert '#SBATCH --array=0-1%1' in r.stdout and '#SBATCH --gres=gpu:1' in r.stdout
    job = re.search(r'submitted SLURM job (\d+)', r.stdout).group(1)
    wait_job(job, env)
    tasks = completed_tasks(slurm_cluster.dir, job)
    logs = ''.join(f.read_text()[-2000:] for f in (tmp_path / 'slurm' / 'slurm').glob('*.log'))
    assert sorted(tasks) == [0, 1] and {t['JobState'] for t in tasks.values()} == {'COMPLETED'}, logs
    assert tasks[1]['StartTime'] >= tasks[0]['EndTime'] or tasks[0]['StartTime'] >= tasks[1]['EndTime']  # %1 held
    recs = records(tmp_path / 'slurm')
    assert sorted(recs) == ['baseline-s0', 'eiou-s0']
    for k, name in enumerate(['baseline-s0', 'eiou-s0']):  # task K ran run K of the plan, on a gres GPU
        assert recs[name]['provenance']['executor'] == f'slurm job {job}_{k}'
        assert recs[name]['provenance']['cuda_visible_devices'] in ('0', '1')
    assert {e['cuda'] for e in events(ev)} <= {'0', '1'} and len(events(ev)) == 2
    ok(ablate('report', path))
    assert tables(tmp_path / 'slurm' / 'results.md') == tables(local_report)
    r = ok(ablate('slurm', path, '--submit', env=env))
    assert 'nothing to submit' in r.stdout and 'submitted' not in r.stdout
    (tmp_path / 'slurm' / 'records' / 'eiou-s0.json').unlink()  # a hole: only its index is submitted again
    r = ok(ablate('slurm', path, env=env))
    assert '#SBATCH --array=1\n' in r.stdout and 'submitted' not in r.stdout
    r = ok(ablate('run', path, '--executor', 'slurm', env=env))  # the same array, waited for
    assert '1 already done' in r.stdout and '#SBATCH --array=1\n' in (tmp_path / 'slurm' / 'slurm' / 'array-1.sbatch'
                                                                        ).read_text()
    # its run folder was complete: the task wrote the record again without training
    assert sorted(records(tmp_path / 'slurm')) == ['baseline-s0', 'eiou-s0'] and len(events(ev)) == 2
    assert tables(tmp_path / 'slurm' / 'results.md') == tables(local_report)


# ------------------------------------------------------------------------------------------- without an engine
def test_slurm_array_spec_holes_and_index(tmp_path):
    assert slurm_executor.array_spec([0, 1, 2, 3], 2) == '0-3%2'
    assert slurm_executor.array_spec([1, 3, 4, 5, 9], None) == '1,3-5,9'
    with pytest.raises(config.AblationError, match='--parallel 0'):
        slurm_executor.array_spec([0], 0)
    abl = {'out': tmp_path, 'seeds': [0, 1, 2], 'variants': [{'name': n} for n in 'abcd']}
    runs = config.plan(abl)
    # --index K is run K of the order --shard deals from
    assert [config.run_at(runs, k).name for k in (1, 6, 11)] == [r.name for r in config.shard_of(runs, (2, 5))]
    with pytest.raises(config.AblationError, match='--index 12: the grid has 12 runs, valid indices 0 to 11'):
        config.run_at(runs, 12)
    (tmp_path / 'records').mkdir()
    for name in ('a-s0', 'a-s1', 'b-s2', 'd-s2'):
        (tmp_path / 'records' / f'{name}.json').write_text('{}')
    assert slurm_executor.holes(abl) == [2, 3, 4, 6, 7, 8, 9, 10]


def test_cluster_options_are_checked(tree, tmp_path, capsys):
    import ablate
    path = ablation_yaml(tmp_path, tree, 'opts', cpus_per_run=0)
    assert ablate.main(['run', str(path)]) == 2
    assert 'cpus_per_run 0 is not a whole number >= 1' in capsys.readouterr().err
    path = ablation_yaml(tmp_path, tree, 'opts')
    assert ablate.main(['run', str(path), '--index', '0', '--executor', 'ray']) == 2
    assert '--index K runs one run here' in capsys.readouterr().err
    assert ablate.main(['run', str(path), '--index', '2']) == 2
    assert 'valid indices 0 to 1' in capsys.readouterr().err


def test_a_node_without_the_drivers_folder_gets_the_inputs(tree, tmp_path):
    """A Ray task on a node that does not share the driver's folder: the variant files and initial weights come from
    the driver (the files ray_tasks sends along), the tiny dataset is generated again, the same bytes."""
    from ablation import prepare, run
    abl = config.load_ablation(ablation_yaml(tmp_path, tree, 'driver'))
    out = abl['out']
    job = prepare.Job(abl, out / 'tiny' / 'data.yaml', {'baseline': {}, 'eiou': {}},
                      {0: out / 'init' / 'baseline-s0.pt'})
    for f in ('variants/baseline/model.yaml', 'variants/baseline/hyp.yaml', 'variants/eiou/model.yaml',
              'variants/eiou/hyp.yaml', 'init/baseline-s0.pt'):
        (out / f).parent.mkdir(parents=True, exist_ok=True)
        (out / f).write_text(f'driver copy of {f}')
    prepare.data_yaml(abl)
    data = {p: p.read_bytes() for p in (out / 'tiny').rglob('*') if p.is_file()}
    files = prepare.shared_inputs(job)
    assert sorted(files) == sorted(str(p) for p in out.glob('*/**/*') if p.is_file() and 'tiny' not in p.parts)
    shutil.rmtree(out)  # the worker's node: nothing of the driver's folder
    run.ensure_inputs(job, files)
    assert all(Path(f).read_bytes() == content for f, content in files.items())
    assert {p: p.read_bytes() for p in (out / 'tiny').rglob('*') if p.is_file()} == data
    abl['tree'] = tmp_path / 'nowhere'
    with pytest.raises(config.AblationError, match='no built tree at .*nowhere on .*same path on every node'):
        run.ensure_inputs(job, files)
