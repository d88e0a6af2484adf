"""Pasted post YAMLs build the post's network: parameter counts against an arithmetic count written here from the
posts' module code (and, for the fixtures, the counts their README gives), at several widths and depths."""
import copy
import math
import re

import pytest
import torch
import yaml
from conftest import PROJECT

POSTS = PROJECT.parent / 'shared' / 'fixtures' / 'posts'
SHIPPED = sorted((PROJECT / 'configs' / 'models').glob('*.yaml'))


def conv(c1, c2, k=1, g=1, bias=False, bn=True):
    return c1 // g * c2 * k * k + (c2 if bias else 0) + (2 * c2 if bn else 0)


def c3(c1, c2, n, attention=None):
    c_ = int(c2 * 0.5)
    inner = n * (conv(c_, c_, 1) + conv(c_, c_, 3) + (attention(c_) if attention else 0))
    return 2 * conv(c1, c_) + conv(2 * c_, c2) + inner


def mobilenetv3_post(c1, c2, hidden, k, s, se, hs):
    # the posts' MobileNetV3 / MobileNet_Block: [1x1 expand] + dw kxk + [SELayer: Linear C->C/4->C, biased] + 1x1
    se_params = hidden * (hidden // 4) * 2 + hidden // 4 + hidden if se else 0
    return (conv(c1, hidden) if c1 != hidden else 0) + conv(hidden, hidden, k, g=hidden) + se_params + conv(hidden, c2)


ATTENTION = {  # parameters of one module on c channels, from each paper's layers as the posts build them
    'SE': lambda c: 2 * c * (c // 16),
    'CBAM': lambda c: 2 * c * (c // 16) + 2 * 7 * 7,
    'CoordAtt': lambda c: conv(c, max(8, c // 32), bias=True) + 2 * conv(max(8, c // 32), c, bias=True, bn=False),
    'ECA': lambda c: 3,
    'SimAM': lambda c: 0,
    'EMA': lambda c: 2 * (c // 8) + conv(c // 8, c // 8, bias=True, bn=False) + conv(c // 8, c // 8, 3, bias=True, bn=False),
}
ALIASES = {'CA': 'CoordAtt', 'MobileNet_Block': 'MobileNetV3', 'mobilev3_bneck': 'MobileNetV3'}


def count_parameters(cfg, nc):
    """Parameters of a YOLOv5 model YAML under the posts' parse rules, by arithmetic."""
    gd, gw = cfg['depth_multiple'], cfg['width_multiple']
    scale = lambda c: math.ceil(c * gw / 8) * 8
    na = len(cfg['anchors'][0]) // 2
    ch, total = [3], 0
    for i, (f, n, name, args) in enumerate(cfg['backbone'] + cfg['head']):
        name = ALIASES.get(name, name)
        n = max(round(n * gd), 1) if n > 1 else n
        c1 = ch[f] if isinstance(f, int) else None
        inner = name[3:].rstrip('123') if name.startswith('C3_') else None  # C3 with attention: which one
        inner = ALIASES.get(inner, inner)
        if name == 'Conv':
            c2 = scale(args[0])
            total += conv(c1, c2, args[1] if len(args) > 1 else 1)
        elif name == 'C3' or inner in ATTENTION:
            c2 = scale(args[0])
            if name != 'C3' and name[-1] in '123':  # as seed 004's C3_EMA1/2/3: once, at placement 1, 2 or 3
                c_att = {'1': int(c2 * 0.5), '2': c1, '3': 2 * int(c2 * 0.5)}[name[-1]]
                total += c3(c1, c2, n) + ATTENTION[inner](c_att)
            else:  # C3, or the posts' C3_CBAM etc.: attention inside each bottleneck
                total += c3(c1, c2, n, ATTENTION.get(inner))
        elif name == 'SPPF':
            c2 = scale(args[0])
            total += conv(c1, c1 // 2) + conv(c1 // 2 * 4, c2)
        elif name in ATTENTION:
            c2 = c1
            total += n * ATTENTION[name](c1)
        elif name == 'nn.Upsample':
            c2 = c1
        elif name == 'Concat':
            c2 = sum(ch[x] for x in f)
        elif name in ('BiFPN_Concat2', 'BiFPN_Concat3'):
            c2 = sum(ch[x] for x in f)
            total += len(f)
        elif name in ('BiFPN_Add2', 'BiFPN_Add3'):  # weights, then a biased 1x1 conv on the summed channels
            c2 = max(ch[x] for x in f)
            total += len(f) + c2 * c2 + c2
        elif name == 'conv_bn_hswish':
            c2 = scale(args[0])
            total += conv(c1, c2, 3)
        elif name == 'MobileNetV3':
            c2 = scale(args[0])
            total += mobilenetv3_post(c1, c2, *args[1:])
        elif name == 'Detect':
            c2 = None
            total += sum(ch[x] * na * (nc + 5) + na * (nc + 5) for x in f)
        else:
            raise NotImplementedError(name)
        ch = ch[1:] if i == 0 else ch
        ch.append(c2)
    return total


def built_parameters(cfg, nc):
    from models.yolo import Model
    return sum(p.numel() for p in Model(copy.deepcopy(cfg), nc=nc).parameters())


def readme_counts():
    """{file: parameter count at nc=80} from the fixtures' README table."""
    rows = re.findall(r'^\| (\S+\.yaml) \|[^|]*\| ([\d,]+) \|', (POSTS / 'README.md').read_text(), re.M)
    return {f: int(n.replace(',', '')) for f, n in rows}


def post_yamls():
    return sorted(POSTS.glob('*.yaml')) if POSTS.exists() else []


@pytest.mark.skipif(not POSTS.exists(), reason='needs ../shared/fixtures')
def test_fixture_counts_are_the_posts_and_our_arithmetic_agrees(yolo):
    counts = readme_counts()
    assert len(counts) >= 4, counts
    for name, expected in counts.items():
        cfg = yaml.safe_load((POSTS / name).read_text())
        assert count_parameters(cfg, 80) == expected, name  # the arithmetic reproduces the posts' own code
        assert built_parameters(cfg, 80) == expected, name


def yolov5s_with_post_c3(name, tree):
    # the C3_CBAM / C3_CA / C3_ECA posts' YAML: every backbone C3 replaced, the P4 stage at 3 repeats
    cfg = yaml.safe_load((tree / 'models' / 'yolov5s.yaml').read_text())
    for row in cfg['backbone']:
        if row[2] == 'C3':
            row[2] = name
    cfg['backbone'][6][1] = 3
    return cfg


@pytest.mark.parametrize('width, depth, nc', [(0.25, 0.33, 3), (0.5, 0.33, 20), (0.75, 0.67, 1), (1.0, 1.0, 80)])
def test_post_and_shipped_yamls_build_the_counted_network_at_any_scale(yolo, tree, width, depth, nc):
    cfgs = {p.name: yaml.safe_load(p.read_text()) for p in post_yamls() + SHIPPED
            if not p.name.startswith('extra_') and 'MobileNetV3-' not in p.name}  # ours keep the paper's widths
    cfgs.update({f'post-{n}': yolov5s_with_post_c3(n, tree) for n in ('C3_CBAM', 'C3_CA', 'C3_ECA', 'C3_SE')})
    for name, cfg in cfgs.items():
        cfg.update(width_multiple=width, depth_multiple=depth)
        if any(r[2].startswith('BiFPN_Add') for r in cfg['head']) and width != 0.5:
            continue  # the post writes [c1, c2] for its v5s widths: its own code builds it only at 0.5
        assert built_parameters(cfg, nc) == count_parameters(cfg, nc), name


def test_posts_mobilenetv3_outputs_are_width_scaled_ours_are_not(yolo):
    from models.yolo import Model
    anchors = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
    row = lambda name: {'nc': 3, 'depth_multiple': 1.0, 'width_multiple': 0.5, 'anchors': anchors,
                        'backbone': [[-1, 1, name[0], [16, 2]], [-1, 1, name[1], [24, 72, 3, 2, 0, 0]],
                                     [-1, 1, name[1], [40, 96, 5, 2, 1, 1]], [-1, 1, name[1], [48, 144, 5, 2, 1, 1]]],
                        'head': [[[1, 2, 3], 1, 'Detect', ['nc', 'anchors']]]}
    posts = Model(row(('conv_bn_hswish', 'MobileNetV3')))
    ours = Model(row(('Conv_BN_HSwish', 'MobileNetV3_Block')))
    assert [posts.model[-1].m[i].in_channels for i in range(3)] == [16, 24, 24]  # 24, 40, 48 x 0.5 -> multiple of 8
    assert [ours.model[-1].m[i].in_channels for i in range(3)] == [24, 40, 48]  # the paper's channels


@pytest.mark.parametrize('cfg', [p for p in SHIPPED if 'MobileNetV3' in p.name] +
                         [p for p in post_yamls() if 'obile' in p.name], ids=lambda p: p.stem)
def test_mobilenetv3_models_fuse_every_batchnorm_and_keep_their_outputs(yolo, cfg):
    from models.yolo import Model
    torch.manual_seed(0)
    model = Model(str(cfg), nc=3).eval()
    with torch.no_grad():  # trained-looking BatchNorms, so that folding them is visible in the outputs
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)[0]
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        model.fuse()
        assert not [n for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
        torch.testing.assert_close(model(x)[0], before, rtol=1e-4, atol=1e-4)
