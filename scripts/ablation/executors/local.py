"""Local executor: one thread per device entry of the YAML (`device: [0, 0, 1, 1]`: two runs per GPU at a time),
each taking the next run from a queue."""
from __future__ import annotations

import queue
import threading

from ..config import devices_of
from ..run import train_and_validate
from . import Outcome


def execute(job, runs, done, label: str = 'local') -> None:
    jobs, lock = queue.Queue(), threading.Lock()
    for r in runs:
        jobs.put(r)

    def worker(device):
        while True:
            try:
                r = jobs.get_nowait()
            except queue.Empty:
                return
            try:
                outcome = Outcome(r, record=train_and_validate(job, r, device, label))
            except Exception as e:  # a failed run is reported with the others, not a crash of the driver
                outcome = Outcome(r, error=str(e))
            with lock:  # done() is called by one thread at a time
                done(outcome)

    threads = [threading.Thread(target=worker, args=(d,)) for d in devices_of(job.abl)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
