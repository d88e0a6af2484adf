"""The EMA paper's comparison modules (SE, CBAM, CA, ECA, SimAM): each against its paper's equations, written
plainly here (forward and gradients, float64), usable after a neck C3 and inside C3 like C3_EMA."""
import math

import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import PROJECT

ATTENTION_YAMLS = {'SE': 'yolov5s_SE', 'CBAM': 'yolov5s_CBAM', 'CoordAtt': 'yolov5s_CA', 'ECA': 'yolov5s_ECA',
                   'SimAM': 'yolov5s_SimAM', 'EMA': 'yolov5s_EMA'}


def se_paper(m, x):
    # Hu et al. 2018, Eqs. 2-4: z = F_sq(u) (global average), s = sigmoid(W2 relu(W1 z)), x~ = s_c * u_c
    z = x.sum((2, 3)) / (x.shape[2] * x.shape[3])
    s = torch.sigmoid(torch.relu(z @ m.fc1.weight.T) @ m.fc2.weight.T)
    return x * s[:, :, None, None]


def cbam_paper(m, x):
    # Woo et al. 2018, Eqs. 1-3: F' = Mc(F) * F, F'' = Ms(F') * F'
    # Mc = sigmoid(W1(W0(F_avg)) + W1(W0(F_max))) with ReLU after W0; Ms = sigmoid(f7x7([AvgPool(F'); MaxPool(F')]))
    w0, w1 = m.fc1.weight[:, :, 0, 0], m.fc2.weight[:, :, 0, 0]
    mlp = lambda v: torch.relu(v @ w0.T) @ w1.T
    f_avg = x.flatten(2).mean(2)
    f_max = x.flatten(2).max(2).values
    f1 = x * torch.sigmoid(mlp(f_avg) + mlp(f_max))[:, :, None, None]
    maps = torch.stack([f1.mean(1), f1.max(1).values], 1)
    k = m.spatial.kernel_size[0]
    return f1 * torch.sigmoid(F.conv2d(maps, m.spatial.weight, padding=k // 2))


def hswish(v):
    return v * torch.clamp(v + 3, 0, 6) / 6


def ca_paper(m, x):
    # Hou et al. 2021, Eqs. 4-9: z^h_c(h) = 1/W sum_i x_c(h, i), z^w_c(w) = 1/H sum_j x_c(j, w);
    # f = delta(F1([z^h, z^w])) (BN + h-swish), g^h = sigmoid(F_h(f^h)), g^w = sigmoid(F_w(f^w)),
    # y_c(i, j) = x_c(i, j) * g^h_c(i) * g^w_c(j). BN here in inference form, with its running statistics
    b, c, h, w = x.shape
    z = torch.cat([x.sum(3) / w, x.sum(2) / h], 2)  # (b, c, h + w)
    conv, bn = m.conv1.conv, m.conv1.bn
    y = torch.einsum('mc,bcl->bml', conv.weight[:, :, 0, 0], z) + conv.bias[None, :, None]
    y = (y - bn.running_mean[None, :, None]) / torch.sqrt(bn.running_var[None, :, None] + bn.eps)
    f = hswish(y * bn.weight[None, :, None] + bn.bias[None, :, None])
    g_h = torch.sigmoid(torch.einsum('cm,bml->bcl', m.conv_h.weight[:, :, 0, 0], f[:, :, :h]) + m.conv_h.bias[None, :, None])
    g_w = torch.sigmoid(torch.einsum('cm,bml->bcl', m.conv_w.weight[:, :, 0, 0], f[:, :, h:]) + m.conv_w.bias[None, :, None])
    return x * g_h[:, :, :, None] * g_w[:, :, None, :]


def eca_paper(m, x):
    # Wang et al. 2020, Eq. 7: omega_i = sigmoid(sum_{j=1..k} w^j y_i^j), y_i^j the k channels around i (zero padded)
    y = x.mean((2, 3))
    k = m.conv.weight.shape[-1]
    padded = F.pad(y, (k // 2, k // 2))
    logits = sum(m.conv.weight[0, 0, j] * padded[:, j:j + y.shape[1]] for j in range(k))
    return x * torch.sigmoid(logits)[:, :, None, None]


def simam_paper(m, x):
    # Yang et al. 2021, Eqs. 5-6: e_t* = 4(sigma^2 + lambda) / ((t - mu)^2 + 2 sigma^2 + 2 lambda), with mu and
    # sigma^2 = 1/M sum (x_i - mu)^2 over the M = H*W - 1 other neurons of the channel; X~ = sigmoid(1/E) * X
    mu = x.mean((2, 3), keepdim=True)
    var = ((x - mu) ** 2).sum((2, 3), keepdim=True) / (x.shape[2] * x.shape[3] - 1)
    lam = m.e_lambda
    e = 4 * (var + lam) / ((x - mu) ** 2 + 2 * var + 2 * lam)
    return x * torch.sigmoid(1 / e)


PAPER = {'SE': se_paper, 'CBAM': cbam_paper, 'CoordAtt': ca_paper, 'ECA': eca_paper, 'SimAM': simam_paper}


def build(name, channels, *options):
    from models.registry import OVERLAY_MODULES
    torch.manual_seed(0)
    m = OVERLAY_MODULES[name](channels, *options).double()
    with torch.no_grad():  # non-trivial BatchNorm statistics and parameters
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    return m.eval()


@pytest.mark.parametrize('name, channels, options, size', [
    ('SE', 64, (), (9, 7)), ('SE', 48, (4,), (5, 5)),
    ('CBAM', 64, (), (9, 7)), ('CBAM', 32, (8, 3), (6, 10)),
    ('CoordAtt', 64, (), (9, 7)), ('CoordAtt', 512, (32,), (4, 6)),
    ('ECA', 64, (), (9, 7)), ('ECA', 256, (None,), (5, 5)), ('ECA', 40, (5,), (3, 8)),
    ('SimAM', 64, (), (9, 7)), ('SimAM', 16, (1e-2,), (2, 3))])
def test_attention_matches_its_paper_forward_and_backward(yolo, name, channels, options, size):
    import copy
    m = build(name, channels, *options)
    x = torch.randn(2, channels, *size, dtype=torch.float64, requires_grad=True)
    out, ref = m(x), PAPER[name](m, x)
    torch.testing.assert_close(out, ref)
    with torch.no_grad():  # and after Model.fuse() folds its BatchNorms (CA's), as val, detect and export run it
        fused = copy.deepcopy(m)
        for layer in fused.modules():
            if hasattr(layer, 'bn') and hasattr(layer, 'forward_fuse'):
                from utils.torch_utils import fuse_conv_and_bn
                layer.conv = fuse_conv_and_bn(layer.conv, layer.bn).double()  # folded in float32
                delattr(layer, 'bn')
                layer.forward = layer.forward_fuse
        torch.testing.assert_close(fused(x), ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    params = [p for p in m.parameters()]
    grads = torch.autograd.grad(out, [x, *params], g)
    ref_grads = torch.autograd.grad(ref, [x, *params], g)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


def test_eca_adaptive_kernel_is_the_papers_psi(yolo):
    from models.eca import ECA
    # k = |log2(C)/2 + 1/2|_odd: the paper's Fig. 3 / Eq. 12 with gamma = 2, b = 1
    for c, k in ((64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7)):
        t = int(abs(math.log2(c) / 2 + 0.5))
        assert (t if t % 2 else t + 1) == k
        assert ECA(c, None).conv.kernel_size == (k,)


@pytest.mark.parametrize('name', sorted(PAPER))
def test_attention_after_a_neck_c3_takes_its_channels_from_the_input(yolo, name):
    from models.yolo import Model
    cfg = PROJECT / 'configs' / 'models' / f'{ATTENTION_YAMLS[name]}.yaml'
    model = Model(str(cfg), nc=3).train()
    found = [m for m in model.model if type(m).__name__ == name]
    assert len(found) == 3  # after each neck C3, where yolov5s_EMA has EMA
    x = torch.randn(1, 3, 64, 64)
    acts = {}
    hooks = [m.register_forward_hook(lambda mod, i, o: acts.__setitem__(id(mod), (i[0].shape, o.shape)))
             for m in found]
    out = model(x)
    for h in hooks:
        h.remove()
    assert [acts[id(m)][0][1] for m in found] == [128, 256, 512]  # YAML 256/512/1024 x width 0.5
    assert all(i == o for i, o in acts.values())
    sum(o.square().mean() for o in out).backward()
    for m in found:
        for pname, p in m.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, f'{name}.{pname}'


@pytest.mark.parametrize('name', sorted(PAPER) + ['EMA'])
def test_attention_inside_c3_at_every_placement(yolo, name):
    from models.c3_attention import C3WithAttention
    from models.registry import OVERLAY_MODULES
    family = {n: c for n, c in OVERLAY_MODULES.items() if issubclass(c, C3WithAttention) and
              c.attention_class is OVERLAY_MODULES[name]}
    placements = {c.placement for c in family.values()}
    assert placements >= {1, 2, 3}, family
    x = torch.randn(2, 32, 8, 8)
    for cls in set(family.values()):
        m = cls(32, 64, 2)
        attention = [a for a in m.modules() if isinstance(a, OVERLAY_MODULES[name])]
        channels = {1: 32, 2: 32, 3: 64, 'bottleneck': 32}[cls.placement]
        assert len(attention) == (2 if cls.placement == 'bottleneck' else 1)
        y = m(x)
        assert y.shape == (2, 64, 8, 8)
        probe = torch.randn(1, channels, 4, 4)
        assert attention[0](probe).shape == probe.shape  # built for the channels at its placement


def test_posts_c3_names_put_attention_inside_each_bottleneck(yolo):
    # the posts' C3_CBAM / C3_CA / C3_ECA: CBAMBottleneck etc., attention on the branch before the residual add
    from models.common import C3
    from models.registry import OVERLAY_MODULES
    for name, attention in (('C3_CBAM', 'CBAM'), ('C3_CA', 'CoordAtt'), ('C3_ECA', 'ECA'), ('C3SE', 'SE')):
        torch.manual_seed(0)
        m = OVERLAY_MODULES[name](32, 32, 2).eval()
        plain = C3(32, 32, 2).eval()
        plain.load_state_dict({k: v for k, v in m.state_dict().items() if '.attention.' not in k})
        x = torch.randn(1, 32, 8, 8)
        with torch.no_grad():
            expected = m.cv1(x)
            for b in m.m:
                expected = expected + b.attention(b.cv2(b.cv1(expected)))
            expected = m.cv3(torch.cat((expected, m.cv2(x)), 1))
            torch.testing.assert_close(m(x), expected)
            assert not torch.allclose(m(x), plain(x))  # the attention does change the block
        assert all(isinstance(b.attention, OVERLAY_MODULES[attention]) for b in m.m)


@pytest.mark.parametrize('yaml_name, row, args, message', [
    ('yolov5s_SE', 18, [256, 200], r'layer 18 \(SE\): SE reduction 200 leaves no hidden channels for 128'),
    ('yolov5s_CBAM', 22, [512, 16, 4], r'layer 22 \(CBAM\): CBAM spatial kernel_size 4 must be odd'),
    ('yolov5s_ECA', 26, [1024, 2], r'layer 26 \(ECA\): ECA k_size 2 must be odd and positive.*\(5 for 512'),
    ('yolov5s_CA', 18, [256, 0], r'layer 18 \(CoordAtt\): CoordAtt reduction 0 must be at least 1'),
    ('yolov5s_SimAM', 18, [256, -1.0], r'layer 18 \(SimAM\): SimAM e_lambda -1.0 must be positive')])
def test_bad_attention_settings_name_the_layer(yolo, yaml_name, row, args, message):
    from models.yolo import Model
    from models.yaml_rules import ModelYAMLError
    cfg = yaml.safe_load((PROJECT / 'configs' / 'models' / f'{yaml_name}.yaml').read_text())
    layers = cfg['backbone'] + cfg['head']
    layers[row][3] = args
    with pytest.raises(ModelYAMLError, match=message):
        Model(cfg, nc=3)


def test_c3_attention_bad_setting_names_the_layer(yolo):
    from models.yolo import Model
    from models.yaml_rules import ModelYAMLError
    cfg = yaml.safe_load((PROJECT / 'configs' / 'models' / 'yolov5s_C3EMA.yaml').read_text())
    row = next(r for r in cfg['backbone'] if r[2] == 'C3_EMA1')
    index = cfg['backbone'].index(row)
    row[2], row[3] = 'C3_SE1', [row[3][0], True, 1, 0.5, 1000]
    with pytest.raises(ModelYAMLError, match=rf'layer {index} \(C3_SE1\): SE reduction 1000'):
        Model(cfg, nc=3)
