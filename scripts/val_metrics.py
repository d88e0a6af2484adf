#!/usr/bin/env python3
"""val.py's results as JSON, from what its run() returns (full precision, per class), not from its console table.

    cd yolov5 && python ../scripts/val_metrics.py OUT.json --weights best.pt --data data.yaml --task test ...

Everything after OUT.json is val.py's own command line; val.py prints its usual table too.
"""
import json
import os
import sys
from pathlib import Path


def main(argv):
    if not argv or argv[0].startswith('-'):
        sys.exit(__doc__)
    out, val_args = Path(argv[0]), argv[1:]
    sys.path.insert(0, os.getcwd())  # the tree, as when val.py runs
    sys.argv = ['val.py', *val_args]
    import val
    from utils.general import check_dataset

    opt = val.parse_opt()
    returned = val.run(**vars(opt))  # v7.0: (P, R, mAP50, mAP50-95, losses...), maps, [map50s,] speeds
    (p, r, map50, map5095, *_), maps, speed = returned[0], returned[1], returned[-1]
    names = check_dataset(opt.data)['names']
    names = names if isinstance(names, dict) else dict(enumerate(names))
    result = {'P': float(p), 'R': float(r), 'mAP50': float(map50), 'mAP50-95': float(map5095),
              'per_class_mAP50-95': {names[i]: float(m) for i, m in enumerate(maps)},
              'speed_ms': dict(zip(('preprocess', 'inference', 'nms'), map(float, speed))),
              'task': opt.task, 'weights': str(opt.weights[0] if isinstance(opt.weights, list) else opt.weights),
              'img': opt.imgsz}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))


if __name__ == '__main__':
    main(sys.argv[1:])
