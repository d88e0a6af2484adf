"""--hyp BASE[,VARIANT...] (utils/hyp_files.py): layering, unknown keys, and what the shipped hyp files hold."""
import pytest
import yaml
from conftest import PROJECT, run_script

HYPS = PROJECT / 'configs' / 'hyps'


@pytest.fixture(scope='module')
def hf(yolo):
    from utils import hyp_files
    return hyp_files


@pytest.fixture(scope='module')
def scratch_low(yolo):
    return yolo / 'data' / 'hyps' / 'hyp.scratch-low.yaml'


def test_later_files_win_and_one_file_is_upstreams(hf, scratch_low, tmp_path):
    upstream = yaml.safe_load(scratch_low.read_text())
    assert hf.load_hyp(str(scratch_low)) == upstream
    short, eiou = HYPS / 'scratch-short.yaml', HYPS / 'eiou.yaml'
    hyp = hf.load_hyp(f'{scratch_low},{short},{eiou}')
    assert hyp == {**upstream, 'lr0': 0.02, 'iou_type': 'EIoU'}
    (tmp_path / 'lr.yaml').write_text('lr0: 0.005\n')
    assert hf.load_hyp(f'{scratch_low},{short},{tmp_path / "lr.yaml"}')['lr0'] == 0.005


def test_resolve_finds_upstream_hyps_by_name(hf, yolo):
    from utils.general import check_yaml
    resolved = hf.resolve_hyp(f'hyp.scratch-low.yaml, {HYPS / "eiou.yaml"}', check_yaml)
    assert resolved.split(',') == [str(yolo / 'data' / 'hyps' / 'hyp.scratch-low.yaml'), str(HYPS / 'eiou.yaml')]


@pytest.mark.parametrize('text,message', [
    ('iou_typ: EIoU\n', "hyp key 'iou_typ' (in {f}) is not a YOLOv5 or overlay key; did you mean 'iou_type'?"),
    ('lr_0: 0.01\n', "hyp key 'lr_0' (in {f}) is not a YOLOv5 or overlay key; did you mean 'lr0'?"),
    ('vfl_alpa: 0.5\n', "did you mean 'vfl_alpha'?"),
    ('zzz: 1\n', "hyp key 'zzz' (in {f}) is not a YOLOv5 or overlay key; valid keys: lr0, lrf"),
    ('lr0: fast\n', "hyp lr0='fast' (in {f}) is not valid; it must be a number"),
    ('iou_type: EIOU2\n', "hyp iou_type='EIOU2' is not valid; choose one of: IoU, GIoU, DIoU, CIoU, EIoU, FocalEIoU, "
                          "SIoU, WIoUv1, WIoUv2, WIoUv3, MPDIoU (in {f})"),
    ('- 1\n- 2\n', 'hyp file {f} must hold `key: value` lines, not a list'),
    ('a: [1\n', 'hyp file {f} is not valid YAML'),
])
def test_bad_keys_and_values_name_the_file_and_the_fix(hf, scratch_low, tmp_path, text, message):
    bad = tmp_path / 'variant.yaml'
    bad.write_text(text)
    with pytest.raises(hf.HypError) as e:
        hf.load_hyp(f'{scratch_low},{bad}')
    assert message.format(f=bad) in str(e.value)


def test_a_variant_alone_says_to_put_a_base_first(hf):
    with pytest.raises(hf.HypError, match=r'hyp is missing lr0, lrf, .*: only some keys\)\. Put a complete base first '
                                          r'.* --hyp hyp.scratch-low.yaml,\S+eiou.yaml'):
        hf.load_hyp(str(HYPS / 'eiou.yaml'))
    with pytest.raises(hf.HypError, match='hyp file /no/such.yaml not found'):
        hf.load_hyp('/no/such.yaml')


def test_a_dict_is_checked_too(hf, scratch_low):
    """--resume and --evolve hand train() a dict (opt.yaml's hyp); train.py adds label_smoothing itself."""
    hyp = {**yaml.safe_load(scratch_low.read_text()), 'label_smoothing': 0.0, 'anchors': 3}
    assert hf.load_hyp(hyp) == hyp
    with pytest.raises(hf.HypError, match="'iou_typ'"):
        hf.load_hyp({**hyp, 'iou_typ': 'EIoU'})


def test_shipped_variant_files_hold_only_their_own_keys(hf, scratch_low):
    """A variant changes what its name says and nothing else: no base values copied in, no value repeated between
    files, every key known."""
    base = yaml.safe_load(scratch_low.read_text())
    files = sorted(HYPS.glob('*.yaml'))
    assert len(files) >= 15
    for f in files:
        layer = yaml.safe_load(f.read_text())
        assert layer and len(layer) <= 5, f'{f.name} holds {len(layer)} keys: a variant holds only its own'
        hf.check_keys(layer, f.name)
        hf.load_hyp({**base, **layer})  # valid on upstream's base
        assert not [k for k, v in layer.items() if base.get(k) == v], f'{f.name} repeats base values'
    assert yaml.safe_load((HYPS / 'scratch-short.yaml').read_text()) == {'lr0': 0.02}


def test_train_py_stops_on_a_misspelled_key_before_training(tree, tiny_data, tmp_path):
    typo = tmp_path / 'typo.yaml'
    typo.write_text('iou_typ: EIoU\n')
    with pytest.raises(AssertionError, match="hyp key 'iou_typ' .* did you mean 'iou_type'") as e:
        run_script(tree, 'train.py', '--data', tiny_data, '--cfg', 'yolov5n.yaml', '--weights', '', '--img', 64,
                   '--epochs', 1, '--batch', 8, '--workers', 0, '--hyp', f'hyp.scratch-low.yaml,{typo}', '--project',
                   tmp_path, '--name', 'typo')
    assert 'Epoch' not in str(e.value) and not (tmp_path / 'typo' / 'weights' / 'last.pt').exists()

