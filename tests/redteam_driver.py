"""Run stock YOLOv5 scripts as `python SCRIPT ARGS...` would, many times in one interpreter (imports paid once).

    python redteam_driver.py TREE JOBS.json RESULTS.jsonl

JOBS.json: [{"script": "detect.py" | "hub", "argv": [...], "marker": path}, ...]. For each job, a line
{"job": i, "started": true} is written before it runs and {"job": i, "error": text or null, "marker": bool} after,
so a job that kills the interpreter (a segfault) is the last one started. hub: torch.hub.load(TREE, 'custom',
path=argv[0], source='local'), as a user loads a downloaded file.
"""
import json
import os
import runpy
import sys
from pathlib import Path

tree, jobs, results = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), open(sys.argv[3], 'a')
os.chdir(tree)
sys.path.insert(0, str(tree))


def run(job):
    if job['script'] == 'hub':
        import torch
        torch.hub.load(str(tree), 'custom', path=job['argv'][0], source='local', verbose=False)
        return
    sys.argv = [job['script'], *job['argv']]
    runpy.run_path(str(tree / job['script']), run_name='__main__')


for i, job in enumerate(jobs):
    results.write(json.dumps({'job': i, 'started': True}) + '\n')
    results.flush()
    error = None
    try:
        run(job)
    except SystemExit as e:
        error = None if e.code in (0, None) else f'SystemExit: {e.code}'
    except BaseException as e:  # what the user would see as the script's traceback
        error = f'{type(e).__name__}: {e}'
    results.write(json.dumps({'job': i, 'error': error, 'marker': os.path.exists(job['marker'])}) + '\n')
    results.flush()
