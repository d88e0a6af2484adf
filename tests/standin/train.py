"""Stand-in for train.py in the cluster tests (tests/test_ablate_cluster.py): writes what a finished run leaves
(results.csv, weights/last.pt and best.pt) in a moment, and tells the test what happened through event files.

standin.json beside it says what to do: {"events": folder, "barrier": n, "hold": true, "fail": [run names]}.
  events   every start writes <run>.<pid>.start.json (pid, parent pid, CUDA_VISIBLE_DEVICES, --device, resume, time)
           and, when it finishes, <run>.<pid>.end.json
  barrier  a first attempt waits until n runs have started (runs that overlap, deterministically)
  hold     the first run past the barrier (first attempts only) writes <run>.<pid>.held.json and waits to be
           killed: its worker, its node or the driver stopped
  fail     these runs exit with an error (status 1), as a train.py that fails
Waits block on the events themselves (events.py); past TIMEOUT seconds one exits with an error, so a broken engine
fails the test instead of hanging it.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

from events import Timeout, wait_for_files, wait_to_be_killed  # beside this file (the test copies both)

TIMEOUT = 60
HERE = Path(__file__).resolve().parent


def event(folder: Path, run: str, kind: str, **data):
    path = folder / f'{run}.{os.getpid()}.{kind}.json'
    tmp = path.with_name(f'.{path.name}.tmp')  # not matched by the test's *.<kind>.json
    tmp.write_text(json.dumps({'run': run, 'pid': os.getpid(), 'ppid': os.getppid(), 'time': time.time(), **data}))
    tmp.replace(path)  # whole files only: the test waits for them


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--project'), p.add_argument('--name'), p.add_argument('--resume'), p.add_argument('--device')
    p.add_argument('--seed')
    opt, _ = p.parse_known_args()
    ctl = json.loads((HERE / 'standin.json').read_text())
    events = Path(ctl['events'])
    folder = Path(opt.resume).parents[1] if opt.resume else Path(opt.project) / opt.name  # <run>/train
    run = folder.parent.name
    event(events, run, 'start', cuda=os.environ.get('CUDA_VISIBLE_DEVICES'), device=opt.device,
          resume=bool(opt.resume))
    if run in ctl.get('fail', []) and not opt.resume:  # as train.py failing at its start: nothing to resume
        sys.exit(f'stand-in train.py: failing {run} on purpose')
    (folder / 'weights').mkdir(parents=True, exist_ok=True)
    (folder / 'weights' / 'last.pt').write_text(run)  # resumable from here on
    if not opt.resume:
        n = ctl.get('barrier', 1)
        wait_for_files(events, lambda: len(list(events.glob('*.start.json'))) >= n, f'{n} runs to start together',
                       TIMEOUT)
        if ctl.get('hold'):
            try:
                os.close(os.open(events / 'hold', os.O_CREAT | os.O_EXCL))  # exactly one run holds
                event(events, run, 'held')
                wait_to_be_killed('its worker, node or driver to stop it', TIMEOUT)
            except FileExistsError:
                pass
    (folder / 'results.csv').write_text('epoch,metrics/precision,metrics/recall,metrics/mAP_0.5,metrics/mAP_0.5:0.95\n'
                                        '0,0.5,0.5,0.2,0.1\n')
    (folder / 'weights' / 'best.pt').write_text(run)
    print('Transferred 1/1 items from the stand-in', flush=True)
    event(events, run, 'end')


if __name__ == '__main__':
    try:
        main()
    except Timeout as e:  # a broken engine fails the test instead of hanging it
        sys.exit(f'stand-in train.py: {e}')
