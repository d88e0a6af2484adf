# NMS time limit per batch, settable: YOLOV5_NMS_TIME_LIMIT=<seconds per batch> or none (default: upstream's)
# v7.0 gives up after 0.5 + 0.05 * batch seconds and returns the images it has not reached with no detections. On a
# slow CPU, or for a young model that scores most anchors above conf 0.001, validation then silently under-reports
# mAP, by an amount that depends on the machine and on the model: an ablation confound. scripts/ablate.py sets none.
import math
import os

VARIABLE = 'YOLOV5_NMS_TIME_LIMIT'


def nms_time_limit(batch_size):
    value = os.environ.get(VARIABLE, '').strip().lower()
    if not value:
        return 0.5 + 0.05 * batch_size  # upstream
    if value in ('none', 'off', 'inf'):
        return math.inf
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f'{VARIABLE}={value!r}: give seconds per batch (> 0) or none')
    return seconds
