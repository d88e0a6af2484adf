"""Pretrained weights into a changed model YAML (utils/weight_transfer.py, train.py --weights, scripts/transfer.py):
every tensor at its own place gets its weights (whole layers, and the unchanged parts of changed ones), nothing
crosses to another layer, new parts keep their init."""
import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from conftest import PROJECT, PY, SCRIPT_ENV, run_script

POSTS = sorted((PROJECT.parent / 'shared' / 'fixtures' / 'posts').glob('*.yaml'))
SHIPPED = sorted((PROJECT / 'configs' / 'models').glob('*.yaml'))
PROBE = 64
EXCLUDE = ('anchor',)  # as train.py with --cfg: the YAML's anchors, then AutoAnchor


def targets():
    from test_models import seed_yamls  # the two YAMLs printed in seed 004, as a user pastes them
    out = [pytest.param(p, id=p.stem) for p in SHIPPED]
    out += [pytest.param(y, id=f'seed004-{i}') for i, y in enumerate(seed_yamls())]
    out += [pytest.param(p, id=f'post-{p.stem}') for p in POSTS]
    return out


def build(cfg, seed, nc=3):
    from models.yolo import Model
    torch.manual_seed(seed)
    cfg = dict(cfg) if isinstance(cfg, dict) else str(cfg)
    return Model(cfg, ch=3, nc=nc)


def randomised(model):
    # every tensor random, BatchNorm statistics too, so a tensor equal to the source's was copied, not coincident
    with torch.no_grad():
        for count, v in enumerate(model.state_dict().values(), 1):
            if v.is_floating_point():
                v.copy_(torch.randn_like(v).abs() + 0.1)
            else:
                v.fill_(1000 + count)  # BatchNorm's num_batches_tracked: a different count in every layer
    return model


def layer_table(model):
    """Independent description of a model: per layer type, absolute inputs, output shape, tensors."""
    shapes = {}
    hooks = [m.register_forward_hook(lambda mod, _, out: shapes.__setitem__(
        mod.i, tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None)) for m in model.model]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, PROBE, PROBE))
    for h in hooks:
        h.remove()
    sd = model.state_dict()
    rows = []
    for m in model.model:
        inputs = [m.i + j if j < 0 else j for j in ([m.f] if isinstance(m.f, int) else m.f)]
        tensors = {k.split('.', 2)[2]: v for k, v in sd.items() if int(k.split('.')[1]) == m.i}
        rows.append({'i': m.i, 'type': type(m).__name__, 'inputs': inputs, 'shape': shapes.get(m.i),
                     'tensors': tensors, 'backbone': m.i < len(model.yaml['backbone'])})
    return rows


# The convolutions of a layer that read the layer's input itself, by type: where that input is its counterpart's
# features in another order, they keep their init (written by hand, apart from the hooks the code under test uses)
INPUT_READERS = {'Conv': ('conv.',), 'C3': ('cv1.conv.', 'cv2.conv.'), 'SPPF': ('cv1.conv.',),
                 'Bottleneck': ('cv1.conv.',), 'BottleneckCSP': ('cv1.conv.', 'cv2.'), 'Focus': ('conv.conv.',)}


def position_mapping(src, dst):
    """{dst layer: src layer} by position rather than by graph alignment: layers of a type the other model lacks
    that keep their input's shape (inserted attention) are taken out, then the backbones (when equally long) and
    the heads are matched position by position. Returns (mapping, dst layers taken out, src layers taken out)."""
    def inserted(rows, other):
        kinds = {r['type'] for r in other}
        shape = lambda i: (3, PROBE, PROBE) if i < 0 else rows[i]['shape']
        return {r['i'] for r in rows if r['type'] not in kinds and len(r['inputs']) == 1 and r['shape'] is not None
                and r['shape'] == shape(r['inputs'][0])}

    out_d, out_s, mapping = set(), set(), {}
    for part in (True, False):  # backbone, then head; taking the candidates out must leave equal lengths, else
        a = [r['i'] for r in dst if r['backbone'] == part]  # they replaced a layer (C3_EMA for C3) rather than
        b = [r['i'] for r in src if r['backbone'] == part]  # being inserted
        a_out, b_out = [i for i in a if i in inserted(dst, src)], [i for i in b if i in inserted(src, dst)]
        if len(a) - len(a_out) == len(b) - len(b_out):
            a, b = [i for i in a if i not in a_out], [i for i in b if i not in b_out]
            out_d.update(a_out), out_s.update(b_out)
        if len(a) == len(b):
            mapping.update(zip(a, b))
    return mapping, out_d, out_s


def expected_tensors(src, dst):
    """{(dst layer, tensor name): src layer}: every tensor of a layer that its positional counterpart holds under
    the same name with the same shape, but for the input-reading convolutions of a layer that reads its
    counterpart's features in another order (a Concat with its inputs swapped)."""
    mapping, out_d, out_s = position_mapping(src, dst)

    def through(rows, taken_out, i):
        while i >= 0 and i in taken_out:
            i = rows[i]['inputs'][0]
        return i

    def related(x, y):  # the same type, or one holding the other's tensors (C3_EMA1 holds a C3)
        return dst[x]['type'] == src[y]['type'] or any(
            k in src[y]['tensors'] and src[y]['tensors'][k].shape == v.shape for k, v in dst[x]['tensors'].items())

    def concatenation(rows, i):  # its output channels are its inputs' channels together
        shape = lambda j: (3, PROBE, PROBE) if j < 0 else rows[j]['shape']
        ins = [shape(j) for j in rows[i]['inputs']]
        return len(ins) > 1 and rows[i]['shape'] is not None and rows[i]['shape'][0] == sum(c[0] for c in ins)

    def alike(x, y, any_order=False):  # does dst layer x hand on what src layer y hands on?
        if x < 0 or y < 0:
            return x < 0 and y < 0
        if mapping.get(x) != y:
            return False
        if related(x, y) and (dst[x]['tensors'] or src[y]['tensors']):
            return True  # a layer with weights at this place defines the feature here
        moves_alike = related(x, y) or (concatenation(dst, x) and concatenation(src, y))
        return moves_alike and inputs_alike(x, y, any_order)

    def inputs_alike(d, s, any_order=False):
        a = [through(dst, out_d, x) for x in dst[d]['inputs']]
        b = [through(src, out_s, y) for y in src[s]['inputs']]
        if any_order:  # put a in b's order, by what each maps to
            a = sorted(a, key=lambda x: b.index(mapping[x]) if mapping.get(x) in b else -1)
        return len(a) == len(b) and all(alike(x, y, any_order) for x, y in zip(a, b))

    expected = {}
    for d, s in mapping.items():
        permuted = not inputs_alike(d, s) and inputs_alike(d, s, any_order=True)  # its counterpart's features, reordered
        readers = INPUT_READERS.get(dst[d]['type'], ()) if permuted else ()
        for k, v in dst[d]['tensors'].items():
            theirs = src[s]['tensors'].get(k)
            if theirs is not None and theirs.shape == v.shape and not any(x in k for x in EXCLUDE) \
                    and not k.startswith(readers):
                expected[(d, k)] = s
    return expected


def check_transfer(src, dst, init_state):
    """Load with train.py's function; then every tensor holds its counterpart's values or its own init."""
    from utils.weight_transfer import load_pretrained
    load_pretrained(src, dst, 'src.pt', EXCLUDE)
    t_src, t_dst = layer_table(src), layer_table(dst)
    expected = expected_tensors(t_src, t_dst)
    got = {}
    for row in t_dst:
        for k, v in row['tensors'].items():
            if any(x in k for x in EXCLUDE) or torch.equal(v, init_state[f'model.{row["i"]}.{k}']):
                continue
            sources = [r['i'] for r in t_src if k in r['tensors'] and r['tensors'][k].shape == v.shape and
                       torch.equal(r['tensors'][k], v)]
            assert len(sources) == 1, f'layer {row["i"]}.{k}: neither its init nor one checkpoint tensor'
            got[(row['i'], k)] = sources[0]
    # a checkpoint tensor equal to the init it would replace (BatchNorm step counts of a stripped checkpoint: 0)
    # cannot show whether it moved
    visible = {(d, k): s for (d, k), s in expected.items()
               if not torch.equal(t_src[s]['tensors'][k], init_state[f'model.{d}.{k}'])}
    missing = sorted(set(visible) - set(got))
    assert not missing, f'{len(missing)} tensors kept their init, expected from the checkpoint: {missing[:6]}'
    assert got == visible  # each from its own counterpart, and nothing else
    return expected


@pytest.fixture(scope='module')
def source(yolo):
    return randomised(build(yolo / 'models' / 'yolov5s.yaml', seed=1))


@pytest.mark.parametrize('cfg', targets())
def test_transfer_into_every_model_yaml(yolo, source, cfg):
    from utils.loss import ComputeLoss
    dst = build(cfg, seed=2)
    init = {k: v.clone() for k, v in dst.state_dict().items()}
    expected = check_transfer(source, dst, init)
    if not (cfg in POSTS and 'obile' in cfg.name):
        # the posts' MobileNetV3 YAMLs share no layer with yolov5s (new backbone, other head widths or inputs)
        assert expected, 'nothing transferred'
        detect = len(dst.model) - 1
        assert any(d == detect for d, _ in expected), 'the Detect head did not get its weights'
    # and the model trains: one step of the stock loss, finite and with gradients everywhere
    dst.train()
    dst.hyp = yaml.safe_load((yolo / 'data' / 'hyps' / 'hyp.scratch-low.yaml').read_text())
    loss, _ = ComputeLoss(dst)(dst(torch.rand(2, 3, 64, 64)), torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.4]]))
    loss.backward()
    assert torch.isfinite(loss).all()
    unused = {id(getattr(m, 'w2' if len(m.f) == 2 else 'w1')) for m in dst.model  # yoloair's Concat_bifpn holds
              if type(m).__name__ == 'BiFPNAddConv'}  # weights for 2 and for 3 inputs, and uses one set
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in dst.parameters() if id(p) not in unused)
    dst.eval()  # and predicts, as val.py and detect.py run it
    with torch.no_grad():
        assert dst(torch.rand(1, 3, 64, 64))[0].shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 5 + 3)


def test_insertion_is_reported_and_index_shift_remapped(yolo, source):
    from utils.weight_transfer import transfer_weights
    dst = build(PROJECT / 'configs' / 'models' / 'yolov5s_EMA.yaml', seed=2)
    t = transfer_weights(source, dst, EXCLUDE)
    assert t.summary(len(dst.state_dict()), 'yolov5s.pt') == \
        'Transferred 348/367 items from yolov5s.pt (78 remapped by structure; new: 18 EMA, 22 EMA, 26 EMA)'
    weighted = [i for i in range(18) if any(True for _ in dst.model[i].parameters())]
    assert t.pairs[27] == 24 and t.pairs[19] == 18 and all(t.pairs[i] == i for i in weighted)


def test_dropped_layers_the_other_way(yolo):
    """From an EMA model's checkpoint back into plain yolov5s: the EMA layers are dropped, the rest found."""
    src = randomised(build(PROJECT / 'configs' / 'models' / 'yolov5s_EMA.yaml', seed=3))
    dst = build(yolo / 'models' / 'yolov5s.yaml', seed=4)
    expected = check_transfer(src, dst, {k: v.clone() for k, v in dst.state_dict().items()})
    assert expected[(24, 'm.0.weight')] == 27 and expected[(18, 'conv.weight')] == 19


def test_identical_architecture_is_upstreams_transfer(yolo, source):
    from utils.general import intersect_dicts
    from utils.weight_transfer import transfer_weights
    for nc in (3, 80):  # same classes: everything; other classes: all but Detect's convolutions
        dst = build(yolo / 'models' / 'yolov5s.yaml', seed=5, nc=nc)
        t = transfer_weights(source, dst, EXCLUDE)
        upstream = intersect_dicts(source.state_dict(), dst.state_dict(), exclude=EXCLUDE)
        assert not t.structural and list(t.state) == list(upstream)
        assert all(torch.equal(t.state[k], upstream[k]) for k in upstream)
        assert t.summary(len(dst.state_dict()), 'x.pt') == f'Transferred {len(upstream)}/{len(dst.state_dict())} ' \
                                                            f'items from x.pt'


def test_a_layer_reading_other_inputs_keeps_its_input_convolutions_init(yolo, source):
    """Same types and shapes everywhere, but the first neck Concat takes its inputs in the other order: the C3
    after it would apply cv1 and cv2 to permuted channels, so those keep their init; the rest of it transfers."""
    from utils.weight_transfer import transfer_weights
    cfg = yaml.safe_load((yolo / 'models' / 'yolov5s.yaml').read_text())
    cfg['head'][2][0] = [6, -1]  # layer 12: [[-1, 6], 1, Concat, [1]] -> [[6, -1], ...]
    cfg['head'].insert(0, [-1, 1, 'nn.Identity', []])  # and one layer more, so this is not the identical-graph path
    for layer in cfg['head'][1:]:
        layer[0] = [x + 1 if x > 9 else x for x in layer[0]] if isinstance(layer[0], list) else layer[0]
    dst = build(cfg, seed=6)
    init = {k: v.clone() for k, v in dst.state_dict().items()}
    t = transfer_weights(source, dst, EXCLUDE)
    assert [(layer.index, why) for layer, why in t.partial] == [(14, 'cv1.conv/cv2.conv reads permuted inputs')]
    assert not t.rewired and 'partial: 14 C3 (cv1.conv/cv2.conv reads permuted inputs)' in t.summary(1, 'x')
    assert 'model.14.cv1.conv.weight' not in t.state and 'model.14.cv2.conv.weight' not in t.state
    assert torch.equal(t.state['model.14.cv3.conv.weight'], source.state_dict()['model.13.cv3.conv.weight'])
    assert t.pairs[15] == 14 and t.pairs[25] == 24  # the rest of the neck and Detect still transfer
    check_transfer(source, dst, init)  # the oracle agrees, tensor by tensor


def test_train_py_fine_tunes_a_checkpoint_into_a_changed_yaml(tree, yolo, source, tiny_data, tmp_path):
    """The stock train.py with --weights X.pt --cfg Y.yaml: structural transfer, then it trains and validates."""
    ckpt = tmp_path / 'yolov5s-3cls.pt'
    source.nc = 3
    torch.save({'model': source.half(), 'epoch': -1}, ckpt)
    source.float()
    r = run_script(tree, 'train.py', '--data', tiny_data, '--cfg', PROJECT / 'configs' / 'models' / 'yolov5s_EMA.yaml',
                   '--weights', ckpt, '--img', 64, '--epochs', 1, '--batch', 8, '--workers', 0, '--project', tmp_path,
                   '--name', 'ft', '--noplots')
    # the tiny dataset has 2 classes: as from COCO weights to one's own data, Detect keeps its init
    assert re.search(r'Transferred 342/367 items from \S+yolov5s-3cls.pt \(72 remapped by structure; '
                     r'new: 18 EMA, 22 EMA, 26 EMA; changed: 27 Detect\)', r.stdout + r.stderr)
    r = run_script(tree, 'val.py', '--weights', tmp_path / 'ft' / 'weights' / 'best.pt', '--data', tiny_data, '--img',
                   64, '--task', 'test', '--project', tmp_path, '--name', 'val')
    assert re.search(r'^\s+all\s+\d+', r.stdout + r.stderr, re.M)


def test_transfer_script_writes_a_usable_checkpoint(tree, yolo, source, tmp_path):
    from utils.compat import load_checkpoint
    src = tmp_path / 'src.pt'
    source.nc = 3
    torch.save({'model': source, 'epoch': -1}, src)
    cfg = PROJECT / 'configs' / 'models' / 'yolov5s_MobileNetV3-Small.yaml'
    r = subprocess.run([PY, str(PROJECT / 'scripts' / 'transfer.py'), str(src), '--cfg', str(cfg), '-o',
                        str(tmp_path / 'out.pt'), '--tree', str(tree)], capture_output=True, text=True, env=SCRIPT_ENV)
    assert r.returncode == 0, r.stderr
    assert re.search(r'^\s+26\s+Detect\s+\d+\s+layer 24$', r.stdout, re.M)  # the listing names each layer's source
    assert re.search(r'^\s+16\s+Conv\s+\d+\s+layer 14$', r.stdout, re.M)
    model = load_checkpoint(tmp_path / 'out.pt')['model']
    assert torch.equal(model.model[26].m[0].weight, source.model[24].m[0].weight)
    assert torch.equal(model.model[16].conv.weight, source.model[14].conv.weight)
    r = subprocess.run([PY, str(PROJECT / 'scripts' / 'transfer.py'), str(tmp_path / 'none.pt'), '--cfg', str(cfg),
                        '-o', str(tmp_path / 'x.pt'), '--tree', str(tree)], capture_output=True, text=True)
    assert r.returncode != 0 and 'none.pt not found' in r.stderr


# ------------------------------------------------------------------ upstream's COCO-pretrained yolov5n.pt, for real
YOLOV5N = PROJECT.parent / 'shared' / 'weights' / 'yolov5n.pt'


@pytest.fixture(scope='module')
def yolov5n(yolo):
    if not YOLOV5N.exists():
        pytest.skip('needs ../shared/weights/yolov5n.pt (upstream\'s COCO-pretrained YOLOv5n)')
    from utils.compat import load_checkpoint
    return load_checkpoint(YOLOV5N)['model'].float()


def at_scale(cfg, depth, width):
    d = yaml.safe_load(Path(cfg).read_text()) if not isinstance(cfg, dict) else dict(cfg)
    return {**d, 'depth_multiple': depth, 'width_multiple': width}


@pytest.mark.parametrize('scale', [(0.33, 0.25), (0.33, 0.50)], ids=['n', 's'])
@pytest.mark.parametrize('cfg', targets())
def test_real_weights_into_every_yaml_at_n_and_s(yolov5n, cfg, scale):
    # every tensor at its own place, by the positional oracle; and at n scale at least what upstream keeps in place
    from utils.general import intersect_dicts
    dst = build(at_scale(cfg, *scale), seed=7)
    init = {k: v.clone() for k, v in dst.state_dict().items()}
    upstream = intersect_dicts(yolov5n.state_dict(), dst.state_dict(), exclude=EXCLUDE)
    expected = check_transfer(yolov5n, dst, init)
    mapping = position_mapping(layer_table(yolov5n), layer_table(dst))[0]
    in_place = [k for k in upstream if mapping.get(int(k.split('.')[1])) == int(k.split('.')[1])]
    ours = dst.state_dict()
    assert all(torch.equal(ours[k], upstream[k]) for k in in_place), 'a tensor upstream keeps in place is lost'


def test_fine_tuning_counts_of_the_issue(yolov5n):
    # yolov5n.pt into n-scale copies of the shipped YAMLs, nc=3: upstream's count, then ours (issue 19's table)
    from utils.general import intersect_dicts
    from utils.weight_transfer import transfer_weights
    counts = {}
    for name in ('C3EMA', 'BiFPN', 'BiFPN_Add', 'EMA'):
        dst = build(at_scale(PROJECT / 'configs' / 'models' / f'yolov5s_{name}.yaml', 0.33, 0.25), seed=8)
        t = transfer_weights(yolov5n, dst, EXCLUDE)
        counts[name] = (len(intersect_dicts(yolov5n.state_dict(), dst.state_dict(), exclude=EXCLUDE)), len(t.state))
        if name == 'C3EMA':
            assert 'partial: 2 C3_EMA1 (ema.gn/ema.conv1x1/ema.conv3x3 new)' in t.summary(1, 'x')
    assert counts == {'C3EMA': (342, 342), 'BiFPN': (340, 340), 'BiFPN_Add': (331, 331), 'EMA': (270, 342)}
