# EMA attention's arithmetic, and a hand-written backward for it. On CPU the module's cost was mostly memory:
# autograd keeps a dozen full-size intermediates and revisits each, and every fresh full-size tensor is paid
# again in page faults. The path below keeps three (the input, y and x2), reuses its buffers, turns the
# reductions into batched matrix-vector products, and runs the 3x3 convolution channels-last.
import torch


def channel_var_mean(y, scratch=None):
    # Per-channel (biased) variance and mean over (h, w). Two passes through a scratch buffer: var_mean's
    # Welford loop is several times slower on CPU, and E[y^2] - E[y]^2 would cancel catastrophically
    mean = y.mean((2, 3))
    centered = torch.sub(y, mean[..., None, None], out=scratch)
    return torch.linalg.vector_norm(centered, dim=(2, 3)).square_() / (y.shape[2] * y.shape[3]), mean


def ema_forward(x, ema, keep=False):
    # Output of the EMA module `ema` (ema_attention.py) and, if keep, what backward needs. Its convolutions are
    # called as modules so that hooks (thop's FLOPs count, YOLOv5's profiler) see them. GroupNorm(y) is never
    # materialised: its spatial mean is the GN bias, and a weighted channel sum of GN(y) is an affine function
    # of the same weighted sum of y, so only y's per-channel statistics enter the result. Buffers are reused in
    # place only where neither autograd nor a tracer (ONNX, TorchScript export) is recording.
    inplace = not torch.is_grad_enabled() and not torch.jit.is_tracing()
    b, c, h, w = x.shape
    n, k = b * ema.groups, c // ema.groups
    gamma, beta = ema.gn.weight, ema.gn.bias
    gx = x.reshape(n, k, h, w)
    # 1x1 branch: pool along each axis, shared 1x1 conv, sigmoid gates
    pooled = torch.cat([gx.mean(3, keepdim=True), gx.mean(2, keepdim=True).transpose(2, 3)], 2)  # (n, k, h + w, 1)
    gate_h, gate_w = ema.conv1x1(pooled).sigmoid().split([h, w], 2)
    gate_w = gate_w.transpose(2, 3)  # (n, k, 1, w)
    y = gx * gate_h
    y = y.mul_(gate_w) if inplace else y * gate_w
    out = torch.empty_like(gx) if inplace else None  # scratch for the statistics, then the output
    var, mean = channel_var_mean(y, out) if inplace else torch.var_mean(y, dim=(2, 3), unbiased=False)
    rstd = torch.rsqrt(var + ema.gn.eps)
    scale = gamma * rstd  # (n, k)
    # 3x3 branch, then cross-spatial learning: each branch's global context weights the other's pixels
    # keep (the hand-written backward, CPU only): oneDNN's 3x3 convolution over few channels is several times
    # faster channels-last, forward and both backward products, than the one copy this costs
    conv_in = gx.contiguous(memory_format=torch.channels_last) if keep else gx
    x2 = ema.conv3x3(conv_in)
    attn1 = beta.softmax(0).expand(n, -1)  # softmax(avgpool(GN(y)))
    attn2 = x2.mean((2, 3)).softmax(1)  # softmax(avgpool(x2))
    coef = attn2 * scale
    offset = (attn2 * (beta - mean * scale)).sum(1)
    weights = (torch.bmm(attn1.unsqueeze(1), x2.flatten(2)) + torch.bmm(coef.unsqueeze(1), y.flatten(2))).view(
        n, 1, h, w) + offset.view(-1, 1, 1, 1)
    gate = weights.sigmoid()
    out = torch.mul(gx, gate, out=out) if inplace else gx * gate
    return out.view(b, c, h, w), ((conv_in, pooled, gate_h, gate_w, y, x2, attn2, mean, rstd, gate) if keep else None)


class EMAFunction(torch.autograd.Function):
    # ema_forward with the backward written out by hand (checked against autograd by gradcheck in the tests)
    @staticmethod
    def forward(ctx, x, ema, w1, b1, w3, b3, gamma, beta):
        # w1 ... beta are ema's parameters, passed so that autograd hands their gradients back
        out, kept = ema_forward(x, ema, keep=True)
        ctx.groups = ema.groups
        ctx.save_for_backward(x, w1, w3, gamma, beta, *kept)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, w1, w3, gamma, beta, conv_in, pooled, gate_h, gate_w, y, x2, attn2, mean, rstd, gate = ctx.saved_tensors
        b, c, h, w = x.shape
        n, k, hw = b * ctx.groups, c // ctx.groups, h * w
        gx, g = x.reshape(n, k, h, w), grad.reshape(n, k, h, w)
        attn1, scale = beta.softmax(0), gamma * rstd
        coef = attn2 * scale
        scratch = g * gx  # reused below for dy * gx, then for the input gradient

        # out = gx * sigmoid(weights)
        dweights = scratch.sum(1, keepdim=True).mul_(gate * (1 - gate))  # (n, 1, h, w)
        dw_col = dweights.view(n, hw, 1)
        # weights = attn1 . x2 + coef . y + offset (per pixel)
        dcoef = torch.bmm(y.view(n, k, hw), dw_col).view(n, k)
        dattn1 = torch.bmm(x2.flatten(2), dw_col).sum(0).view(k)
        doffset = dweights.sum((1, 2, 3)).unsqueeze(1)  # (n, 1)
        # coef = attn2 * scale, offset = sum(attn2 * (beta - mean * scale)), scale = gamma * rstd(var)
        dattn2 = dcoef * scale + doffset * (beta - mean * scale)
        dscale = (dcoef - doffset * mean) * attn2
        dmean = -doffset * attn2 * scale
        dvar = -0.5 * dscale * gamma * rstd ** 3
        dgamma = (dscale * rstd).sum(0)
        dbeta = (doffset * attn2).sum(0) + attn1 * (dattn1 - (dattn1 * attn1).sum())
        dmean2 = attn2 * (dattn2 - (dattn2 * attn2).sum(1, keepdim=True))  # through softmax over channels

        # y enters the weighted sum and its own statistics: dy = coef*dweights + dmean/hw + dvar*2(y - mean)/hw
        dy_y = (2 / hw) * dvar
        dy = torch.addcmul((dmean / hw - dy_y * mean).view(n, k, 1, 1), y, dy_y.view(n, k, 1, 1))
        dy.addcmul_(coef.view(n, k, 1, 1), dweights)
        # x2 enters the weighted sum and its own spatial mean
        dx2 = torch.addcmul((dmean2 / hw).view(n, 1, 1, k), dweights.view(n, h, w, 1), attn1)  # (n, h, w, k)
        dx2 = dx2.permute(0, 3, 1, 2)  # channels-last, as conv_in
        dgx_conv, dw3, db3 = torch.ops.aten.convolution_backward(
            dx2, conv_in, w3, [k], [1, 1], [1, 1], [1, 1], False, [0, 0], 1, [True, True, True])
        del dx2

        # y = gx * gate_h * gate_w: the gates' gradients are batched matrix-vector products over one axis each
        t = torch.mul(dy, gx, out=scratch).view(n * k, h, w)
        dgate_h = torch.bmm(t, gate_w.reshape(n * k, w, 1)).view(n, k, h, 1)
        dgate_w = torch.bmm(gate_h.reshape(n * k, 1, h), t).view(n, k, w, 1)
        gw_col = gate_w.transpose(2, 3)
        dz = torch.cat([dgate_h * gate_h * (1 - gate_h), dgate_w * gw_col * (1 - gw_col)], 2)
        dpooled, dw1, db1 = torch.ops.aten.convolution_backward(
            dz, pooled, w1, [k], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, True])
        dpool_h, dpool_w = dpooled.split([h, w], 2)

        dgx = torch.addcmul(dpool_h / w, g, gate, out=scratch)  # through the output product and the X pool
        dgx += dy.mul_(gate_h).mul_(gate_w)
        dgx += dgx_conv
        dgx += dpool_w.transpose(2, 3) / h  # Y pool
        return dgx.view(b, c, h, w), None, dw1, db1, dw3, db3, dgamma, dbeta
