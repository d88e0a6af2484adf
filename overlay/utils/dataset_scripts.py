# A data YAML's `download:` code runs only where it comes with the code (patch safe-dataset-scripts)
#
# check_dataset runs a data YAML's download field when the dataset is missing: `bash ...` through a shell, anything
# else through exec(). Upstream's own data/*.yaml use that to fetch COCO, VOC, ... A YAML from anywhere else (a
# post, a downloaded dataset) would run its code on the first train.py or val.py. Such code runs here only for
# the tree's data/ folder, or with YOLOV5_TRUST_DATA_SCRIPTS=1 for a YAML you trust; a plain URL of a .zip is
# still downloaded and unzipped as before.
import os
from pathlib import Path

TRUST_ENV = 'YOLOV5_TRUST_DATA_SCRIPTS'


def check_download_script(yaml_file, script, root):
    """Raise unless the download code of yaml_file (None: a dict given in code) may run."""
    if yaml_file is None or os.environ.get(TRUST_ENV, '').lower() in ('1', 'true', 'yes'):
        return
    shipped = Path(root).resolve() / 'data'
    if shipped in Path(yaml_file).resolve().parents:
        return
    first = str(script).strip().splitlines()[0][:80] if str(script).strip() else ''
    raise PermissionError(f'{yaml_file} downloads its dataset with code ({first!r}...), which runs only for the data '
                          f'YAMLs shipped in {shipped}; download the dataset yourself, or set {TRUST_ENV}=1 if you '
                          f'trust this file')
