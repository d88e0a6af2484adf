# Label caches read without unpickling code (patch safe-label-cache)
#
# LoadImagesAndLabels saves its scan of a dataset as labels/<split>.cache: np.save of a dict, i.e. a pickle, which
# v7.0 read back with np.load(allow_pickle=True). A dataset downloaded with a crafted .cache beside its labels ran
# code on the first val.py or train.py. Here the pickle is read by utils/safe_unpickler.py with plain data only
# (dicts, lists, strings, numbers, numpy arrays of numbers): what YOLOv5 writes there. Anything else is refused,
# said, and the dataloader rebuilds the cache from the labels, as it does for a stale one.
import logging

import numpy as np

from utils.safe_data import plain_data_policy
from utils.safe_unpickler import Refused, RestrictedUnpickler

LOGGER = logging.getLogger('yolov5')


def load_label_cache(path):
    """The dict a YOLOv5 .cache file holds; raises (Refused, ValueError, ...) for anything else."""
    try:
        with open(path, 'rb') as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(version,
                                                                            np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(f)
            if shape != () or dtype != np.dtype(object):
                raise Refused(f'it holds a {dtype} array of shape {shape}, not the pickled dict of a label cache')
            array = RestrictedUnpickler(f, plain_data_policy(objects=True)).load()
        cache = array.item() if isinstance(array, np.ndarray) and array.shape == () else None
        if not isinstance(cache, dict):
            raise Refused(f'it holds {type(cache).__name__}, not a dict')
        return cache
    except Refused as e:
        LOGGER.warning(f'WARNING ⚠️ label cache {path} refused: {e}; rebuilding it from the labels')
        raise
