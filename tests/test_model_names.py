"""Every shipped model YAML at every scale by name (utils/model_names.py): train.py, transfer.py, bench, ablations."""
import subprocess

import pytest
import yaml
from conftest import PROJECT, PY, SCRIPT_ENV

SHIPPED = sorted(p.name for p in (PROJECT / 'configs' / 'models').glob('yolov5s_*.yaml'))
SCALES = {'n': (0.33, 0.25), 's': (0.33, 0.50), 'm': (0.67, 0.75), 'l': (1.0, 1.0), 'x': (1.33, 1.25)}  # upstream's


def parameters(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize('letter', list(SCALES))
@pytest.mark.parametrize('shipped', SHIPPED)
def test_every_shipped_yaml_at_every_scale_by_name(yolo, shipped, letter):
    # check_yaml finds yolov5<letter>_X.yaml as train.py does; the model equals the shipped one at that scale's
    # depth and width (as upstream's yolov5<letter>.yaml differs from yolov5s.yaml)
    from models.yolo import Model
    from utils.general import check_yaml
    name = shipped.replace('yolov5s_', f'yolov5{letter}_')
    cfg = yaml.safe_load(open(check_yaml(name)))
    depth, width = SCALES[letter]
    assert (cfg['depth_multiple'], cfg['width_multiple']) == (depth, width)
    reference = yaml.safe_load((PROJECT / 'configs' / 'models' / shipped).read_text())
    assert {k: v for k, v in cfg.items() if 'multiple' not in k} == \
           {k: v for k, v in reference.items() if 'multiple' not in k}
    if letter in 'ns':  # building l and x on 2 cores adds nothing the config check does not show
        built = Model(check_yaml(name), nc=3)
        assert built.yaml_file == name
        assert parameters(built) == parameters(Model({**reference, 'depth_multiple': depth,
                                                      'width_multiple': width}, nc=3))


def test_a_name_that_matches_nothing_names_the_closest(yolo):
    from utils.general import check_yaml
    with pytest.raises(FileNotFoundError, match=r'yolov5n_EMMA\.yaml \(closest: yolov5n_EMA\.yaml'):
        check_yaml('yolov5n_EMMA.yaml')


def test_train_py_and_transfer_py_take_a_scaled_name(tree, tiny_data, tmp_path):
    r = subprocess.run([PY, 'train.py', '--cfg', 'yolov5n_EMA.yaml', '--weights', '', '--data', str(tiny_data),
                        '--img', '64', '--epochs', '1', '--batch', '4', '--workers', '0', '--project', str(tmp_path),
                        '--noval', '--noplots'], cwd=tree, env=SCRIPT_ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'YOLOv5n_EMA summary' in r.stdout + r.stderr  # the model is named after what was asked for
    r = subprocess.run([PY, str(PROJECT / 'scripts' / 'transfer.py'), str(tmp_path / 'exp' / 'weights' / 'last.pt'),
                        '--cfg', 'yolov5n_SE.yaml', '-o', str(tmp_path / 'se.pt'), '--tree', str(tree)],
                       env=SCRIPT_ENV, capture_output=True, text=True)
    assert r.returncode == 0 and (tmp_path / 'se.pt').exists(), r.stderr[-2000:]


def test_bench_and_ablations_resolve_the_same_names(tree, tmp_path):
    from ablation import config as ablation_config
    import bench
    from overlay_import import overlay_module
    assert ablation_config.SCALES == overlay_module('model_names').SCALES == SCALES  # one table, upstream's values
    assert yaml.safe_load(bench.resolve_cfg('yolov5m_CBAM', tree).read_text())['width_multiple'] == 0.75
    abl = {'tree': tree, 'scale': None}
    path = ablation_config.find_cfg(abl, {'name': 'v', 'cfg': 'yolov5l_ECA.yaml'})
    assert yaml.safe_load(path.read_text())['depth_multiple'] == 1.0
    with pytest.raises(ablation_config.AblationError, match='closest'):
        ablation_config.find_cfg(abl, {'name': 'v', 'cfg': 'yolov5n_ECAA.yaml'})
    # `scale:` in an ablation is the same code
    model = ablation_config.variant_model({**abl, 'scale': 'x'}, {'name': 'v', 'cfg': 'yolov5s_EMA.yaml'})
    assert (model['depth_multiple'], model['width_multiple']) == SCALES['x']


def test_make_train_takes_a_scaled_name():
    r = subprocess.run(['make', '-n', 'train', 'CFG=yolov5n_EMA.yaml'], cwd=PROJECT, capture_output=True, text=True)
    assert r.returncode == 0 and '--cfg yolov5n_EMA.yaml' in r.stdout
