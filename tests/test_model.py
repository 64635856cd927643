"""Tests of operations, the DARTS space's retraining network, model_eval and the numeric helpers of
training, against numpy written from the math.

The parameter names asserted here (cell{i}/pre1/conv/conv/W, .../dw/depthwise_conv/W, aux/...,
classifier/affine/W) are pinned on purpose: they are the keys of params.h5 and of every
checkpoint, which --resume, --eval-only and --export-nnp load by name, so renaming one is a
change of the saved format.
"""
import functools
import math

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import nnabla.solvers as S
import pytest

import genotype
import model_eval
import operations
import numerics
from spaces.darts_cnn import arch as darts_arch
from spaces.darts_cnn.network import network

DARTS_V2 = darts_arch.PAPER_ARCHS['DARTS_V2']
DARTS_V1 = darts_arch.PAPER_ARCHS['DARTS_V1']
IDENTITY_ID = 6
pytestmark = pytest.mark.usefixtures('fresh_parameters')  # every test builds in an empty parameter scope


def no_bn(h, name='bn'):
    """A ``bn`` argument that leaves the op's output as it is."""
    return h


def param(suffix):
    """The one parameter whose name ends with ``suffix``."""
    found = [v for k, v in nn.get_parameters(grad_only=False).items() if k.endswith(suffix)]
    assert len(found) == 1, (suffix, list(nn.get_parameters(grad_only=False)))
    return found[0]


def run(op, x, C, stride, bn=no_bn):
    """Build ``op`` on numpy input ``x``, forward it, return (output array, output Variable)."""
    xv = nn.Variable.from_numpy_array(x.astype(np.float32))
    y = op(operations.NodeOutput(xv), C, stride, bn)
    y.forward()
    return y.d.copy(), y


# ---------------------------------------------------------------- numpy references


def np_pool(x, stride, reduce):
    """3x3 pooling with padding 1 in which the padded cells take no part (any reduction)."""
    B, C, H, W = x.shape
    Ho, Wo = (H + 2 - 3) // stride + 1, (W + 2 - 3) // stride + 1
    out = np.empty((B, C, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            r, c = i * stride - 1, j * stride - 1
            out[:, :, i, j] = reduce(x[:, :, max(r, 0):r + 3, max(c, 0):c + 3], axis=(2, 3))
    return out


def np_depthwise(x, w, stride, pad, dilation):
    """Depthwise convolution (w: (C, k, k)), zero padding, as cross-correlation."""
    B, C, H, W = x.shape
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Ho = (H + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    Wo = (W + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    out = np.zeros((B, C, Ho, Wo))
    for a in range(k):
        for b in range(k):
            patch = xp[:, :, a * dilation:a * dilation + stride * (Ho - 1) + 1:stride,
                       b * dilation:b * dilation + stride * (Wo - 1) + 1:stride]
            out += patch * w[None, :, a, b, None, None]
    return out


def np_pointwise(x, w):
    """1x1 convolution with weights (C_out, C_in, 1, 1)."""
    return np.einsum('oc,bchw->bohw', w[:, :, 0, 0], x)


def relu(x):
    return np.maximum(x, 0)


def np_batch_norm(x, eps=1e-5):
    """Batch-statistics normalisation per channel, without scale and shift."""
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    var = x.var(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


# ---------------------------------------------------------------- pooling


@pytest.mark.parametrize('stride', [1, 2])
def test_avg_pool_does_not_count_the_padding(stride):
    x = np.random.RandomState(1).randn(2, 3, 7, 8)
    y, _ = run(operations.OPS[5], x, 3, stride)
    expected = np_pool(x, stride, np.mean)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)
    # the corner: four real pixels, so their mean, not their sum over nine
    np.testing.assert_allclose(y[:, :, 0, 0], x[:, :, :2, :2].mean(axis=(2, 3)), rtol=1e-5, atol=1e-6)
    assert not np.allclose(y[:, :, 0, 0], x[:, :, :2, :2].sum(axis=(2, 3)) / 9, atol=1e-3)


@pytest.mark.parametrize('stride', [1, 2])
def test_max_pool_ignores_the_padding(stride):
    x = -np.abs(np.random.RandomState(2).randn(2, 3, 8, 8)) - 0.1  # all negative: zero padding would win
    y, _ = run(operations.OPS[4], x, 3, stride)
    expected = np_pool(x, stride, np.max)
    assert y.shape == expected.shape == (2, 3, 8 // stride, 8 // stride)
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    assert (y < 0).all()


def test_pools_keep_the_channels_and_have_no_parameters():
    x = np.random.RandomState(3).randn(1, 5, 32, 32)
    for op_id in (4, 5):
        y, _ = run(operations.OPS[op_id], x, 5, 2)
        assert y.shape == (1, 5, 16, 16)
    assert nn.get_parameters(grad_only=False) == {}


# ---------------------------------------------------------------- identity / factorized reduction


def test_identity_at_stride_1_is_the_input_itself():
    xv = nn.Variable((2, 4, 8, 8))
    assert operations.OPS[IDENTITY_ID](operations.NodeOutput(xv), 4, 1, no_bn) is xv
    assert nn.get_parameters(grad_only=False) == {}


def test_factorized_reduction_matches_numpy_with_the_shifted_second_path():
    x = np.random.RandomState(4).randn(2, 6, 8, 8)
    y, _ = run(operations.OPS[IDENTITY_ID], x, 4, 2)
    assert y.shape == (2, 4, 4, 4)
    w1, w2 = param('conv1/conv/W').d.astype(np.float64), param('conv2/conv/W').d.astype(np.float64)
    assert w1.shape == w2.shape == (2, 6, 1, 1)
    r = relu(x)
    first = np_pointwise(r[:, :, 0::2, 0::2], w1)
    second = np_pointwise(r[:, :, 1::2, 1::2], w2)  # the input shifted by one pixel
    np.testing.assert_allclose(y, np.concatenate([first, second], axis=1), rtol=1e-4, atol=1e-5)
    # the second half is not the unshifted input through the second conv
    assert not np.allclose(y[:, 2:], np_pointwise(r[:, :, 0::2, 0::2], w2), atol=1e-3)


def test_factorized_reduction_ends_with_batch_norm_and_splits_odd_channels():
    x = np.random.RandomState(5).randn(3, 4, 6, 6)
    bn = functools.partial(operations.batch_norm, affine=False, test=False)
    y, _ = run(operations.OPS[IDENTITY_ID], x, 5, 2, bn)
    assert y.shape == (3, 5, 3, 3)
    w1, w2 = param('conv1/conv/W').d, param('conv2/conv/W').d
    assert w1.shape[0] + w2.shape[0] == 5
    r = relu(x)
    raw = np.concatenate([np_pointwise(r[:, :, ::2, ::2], w1), np_pointwise(r[:, :, 1::2, 1::2], w2)], axis=1)
    np.testing.assert_allclose(y, np_batch_norm(raw), rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- separable and dilated convolutions


@pytest.mark.parametrize('op_id, kernel', [(2, 3), (3, 5)])
@pytest.mark.parametrize('stride', [1, 2])
def test_sep_conv_matches_numpy(op_id, kernel, stride):
    x = np.random.RandomState(6).randn(2, 3, 9, 9)
    y, _ = run(operations.OPS[op_id], x, 5, stride)
    Ho = (9 - 1) // stride + 1
    assert y.shape == (2, 5, Ho, Ho)
    h = x
    for i, s in enumerate((stride, 1)):
        dw = param('sep{}/dw/depthwise_conv/W'.format(i)).d.astype(np.float64)
        pw = param('sep{}/pw/conv/W'.format(i)).d.astype(np.float64)
        assert dw.shape == (3, kernel, kernel)
        h = np_pointwise(np_depthwise(relu(h), dw, s, kernel // 2, 1), pw)
    assert param('sep1/pw/conv/W').shape == (5, 3, 1, 1)
    np.testing.assert_allclose(y, h, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('op_id, kernel', [(0, 3), (1, 5)])
@pytest.mark.parametrize('stride', [1, 2])
def test_dil_conv_matches_numpy_with_dilation_2(op_id, kernel, stride):
    x = np.random.RandomState(7).randn(2, 3, 11, 11)
    y, _ = run(operations.OPS[op_id], x, 4, stride)
    dw, pw = param('dw/depthwise_conv/W').d.astype(np.float64), param('pw/conv/W').d.astype(np.float64)
    assert dw.shape == (3, kernel, kernel) and pw.shape == (4, 3, 1, 1)
    expected = np_pointwise(np_depthwise(relu(x), dw, stride, kernel - 1, 2), pw)
    assert y.shape == expected.shape == (2, 4, (11 - 1) // stride + 1, (11 - 1) // stride + 1)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('op_id, size, rows', [(0, 9, [2, 4, 6]), (1, 13, [2, 4, 6, 8, 10])])
def test_dil_conv_impulse_response_skips_every_other_pixel(op_id, size, rows):
    x = np.zeros((1, 2, size, size))
    x[0, 0, size // 2, size // 2] = 1.0
    xv = nn.Variable.from_numpy_array(x.astype(np.float32))
    y = operations.OPS[op_id](operations.NodeOutput(xv), 2, 1, no_bn)
    for p in nn.get_parameters(grad_only=False).values():
        p.d = 1.0
    y.forward()
    expected = np.zeros((size, size))
    expected[np.ix_(rows, rows)] = 1.0  # offsets -2, 0, 2 (-4..4 for 5x5) from the impulse only
    for c in range(2):
        np.testing.assert_array_equal(y.d[0, c], expected)


def test_sep_conv_3x3_impulse_response_is_two_stacked_3x3_windows():
    x = np.zeros((1, 3, 9, 9))
    x[0, 1, 4, 4] = 1.0
    xv = nn.Variable.from_numpy_array(x.astype(np.float32))
    y = operations.OPS[2](operations.NodeOutput(xv), 2, 1, no_bn)
    for p in nn.get_parameters(grad_only=False).values():
        p.d = 1.0
    y.forward()
    tri = np.array([1, 2, 3, 2, 1], dtype=np.float64)
    expected = np.zeros((9, 9))
    expected[2:7, 2:7] = 3 * np.outer(tri, tri)  # 3x3 ones (*) 3x3 ones, summed over the 3 channels
    for c in range(2):
        np.testing.assert_array_equal(y.d[0, c], expected)


def test_zero_op_gives_zeros_of_the_output_shape():
    x = np.random.RandomState(8).randn(2, 3, 8, 8)
    for stride, size in ((1, 8), (2, 4)):
        y, _ = run(operations.OPS[7], x, 3, stride)
        assert y.shape == (2, 3, size, size) and not y.any()


# ---------------------------------------------------------------- the network


def _count(params):
    return int(sum(np.prod(v.shape) for v in params.values()))


@pytest.mark.parametrize('name, auxiliary, expected', [
    ('DARTS_V2', False, 3349342), ('DARTS_V2', True, 3825768), ('DARTS_V1', False, 3169414)])
def test_parameter_counts_of_the_paper_networks(name, auxiliary, expected):
    network(nn.Variable((1, 3, 32, 32)), genotype.load(name), 36, 20, auxiliary=auxiliary)
    params = nn.get_parameters(grad_only=True)
    assert _count(params) == expected
    assert model_eval.count_parameters(params) == expected
    # the reduction cells are cells 6 and 13: each doubles the channels of the cells from it on
    for i in range(20):
        C = 36 * 2 ** ((i >= 6) + (i >= 13))
        assert params['cell{}/pre1/conv/conv/W'.format(i)].shape[0] == C, i


@pytest.mark.parametrize('size, classes, C, L, imagenet, expected, aux_expected', [
    (224, 1000, 48, 14, True, 4718752, 1260776),  # the paper's ImageNet network (mobile setting)
    (32, 100, 36, 20, False, 3401272, 545636),    # CIFAR-100: the classifiers follow the classes
])
def test_parameter_counts_beyond_cifar10(size, classes, C, L, imagenet, expected, aux_expected):
    network(nn.Variable((1, 3, size, size)), DARTS_V2, C, L, classes, auxiliary=True, imagenet=imagenet)
    params = nn.get_parameters(grad_only=True)
    aux = _count({k: v for k, v in params.items() if k.startswith('aux/')})
    assert (_count(params) - aux, aux) == (expected, aux_expected)
    # CIFAR-10's 3,349,342 plus a classifier of 576 inputs to 90 more classes
    assert imagenet or expected == 3349342 + 577 * 90


def test_the_imagenet_network_of_the_paper():
    """Three stride-2 convolutions as stem (C/2, C, C), the first cell reading the reduced stem
    outputs, 7x7 maps at the end and at the aux head, whose pooling has stride 2 and whose 2x2
    convolution has no BN."""
    x = nn.Variable((1, 3, 224, 224))
    logits, aux = network(x, DARTS_V2, 48, 14, 1000, auxiliary=True, imagenet=True)
    params = nn.get_parameters(grad_only=True)
    assert params['stem0/conv1/conv/W'].shape == (24, 3, 3, 3)
    assert params['stem0/conv2/conv/W'].shape == (48, 24, 3, 3)
    assert params['stem1/conv/conv/W'].shape == (48, 48, 3, 3)
    assert 'cell0/pre0/conv1/conv/W' in params  # a factorized reduction of stem0's 56x56 output
    assert 'aux/bn1/bn/gamma' in params and not any(k.startswith('aux/bn2') for k in params)
    assert params['classifier/affine/W'].shape == (4 * 192, 1000) and logits.shape == aux.shape == (1, 1000)
    shapes = {}

    def visit(f):
        shapes.setdefault(f.info.type_name, []).append((f.inputs[0].shape, f.info.args))
    logits.visit(visit)
    aux.visit(visit)
    (pool_input, pool_args), = [s for s in shapes['AveragePooling'] if s[1]['kernel'] == [5, 5]]
    assert pool_input[2:] == (7, 7) and pool_args['stride'] == [2, 2]
    assert [s for s, _ in shapes['Mean']] == [(1, 768, 7, 7)]  # the classifier's 7x7 average pooling


def test_multiply_adds_of_a_hand_sized_graph():
    x = nn.Variable((2, 3, 8, 8))
    h = PF.convolution(x, 4, (3, 3), pad=(1, 1), with_bias=False, name='c')          # 8*8*4 * 3*9 = 6912
    h = PF.depthwise_convolution(h, (3, 3), pad=(1, 1), stride=(2, 2), name='d')     # 4*4*4 * 9 = 576
    y = PF.affine(F.mean(h, axis=(2, 3)), 10, name='a')                              # 4 * 10 = 40
    assert model_eval.multiply_adds(y) == 6912 + 576 + 40


def _channels(C, L, i):
    """Channels of cell i: C doubled at each reduction cell (L//3 and 2L//3, one cell when L=1) reached."""
    reductions = sorted({L // 3, 2 * L // 3})
    return C * 2 ** len([r for r in reductions if r <= i])


@pytest.mark.parametrize('L', [1, 2, 3, 6])
def test_reduction_cells_double_channels_and_aux_head_sits_at_2L_over_3(L):
    C = 4
    logits, aux = network(nn.Variable((2, 3, 32, 32)), DARTS_V1, C, L, auxiliary=True)
    assert logits.shape == (2, 10) and aux.shape == (2, 10)
    params = nn.get_parameters(grad_only=True)
    reductions = {L // 3, 2 * L // 3}
    for i in range(L):
        C_i = _channels(C, L, i)
        C_prev = 3 * C if i == 0 else 4 * _channels(C, L, i - 1)
        assert params['cell{}/pre1/conv/conv/W'.format(i)].shape == (C_i, C_prev, 1, 1), i
        # after a reduction cell the next cell's s0 input must be halved: factorized reduction
        factorized = 'cell{}/pre0/conv1/conv/W'.format(i) in params
        assert factorized == (i - 1 in reductions), i
        # avg_pool from node 0 is the last op of V1's reduction cell: no params; its sep convs have
        has_sep = 'cell{}/node2_0/sep0/dw/depthwise_conv/W'.format(i) in params
        assert has_sep == (i not in reductions), i
    C_last = 4 * _channels(C, L, L - 1)
    assert params['classifier/affine/W'].shape == (C_last, 10)
    # aux head input: the 4 * 4C channels of cell 2L//3 at 8x8 (pool 5/3 -> 2x2, conv 2x2 -> 1x1)
    assert params['aux/conv1/conv/W'].shape == (128, 4 * _channels(C, L, 2 * L // 3), 1, 1)
    assert params['aux/conv2/conv/W'].shape == (768, 128, 2, 2)
    if L > 1:  # two reductions: 8x8 at the head
        assert params['aux/affine/W'].shape == (768, 10)


def test_output_shapes_and_aux_logits_only_when_training_with_aux():
    arch, x = DARTS_V2, nn.Variable.from_numpy_array(np.random.RandomState(9).randn(2, 3, 32, 32))
    logits, aux = network(x, arch, 4, 3, auxiliary=True)
    nn.forward_all([logits, aux])
    assert logits.d.shape == aux.d.shape == (2, 10) and np.isfinite(logits.d).all() and np.isfinite(aux.d).all()
    n_params = len(nn.get_parameters(grad_only=False))
    logits_t, aux_t = network(x, arch, 4, 3, auxiliary=True, test=True)
    assert aux_t is None and logits_t.shape == (2, 10)
    logits_n, aux_n = network(x, arch, 4, 3, auxiliary=False)
    assert aux_n is None and logits_n.shape == (2, 10)
    assert len(nn.get_parameters(grad_only=False)) == n_params  # both share the first graph's weights


def test_a_cell_with_one_intermediate_node():
    arch = {'arch_normal': {'2': [[2, 0], [6, 1]]}, 'arch_reduction': {'2': [[4, 0], [6, 1]]}}
    darts_arch.validate(arch, num_nodes=4)  # nodes 2..num_nodes-2: two inputs, node 2, the output
    x = nn.Variable.from_numpy_array(np.random.RandomState(13).randn(2, 3, 32, 32))
    logits, aux = network(x, arch, 4, 3, auxiliary=True)
    nn.forward_all([logits, aux])
    params = nn.get_parameters(grad_only=True)
    assert params['classifier/affine/W'].shape == (16, 10)  # one node of 4 * 2 * 2 channels
    assert params['cell1/pre1/conv/conv/W'].shape == (8, 4, 1, 1)
    assert np.isfinite(logits.d).all()


# ---------------------------------------------------------------- drop path


def expected_masks(arch, L):
    """Ops that get a drop-path mask: all but the identity at stride 1 (counted from the arch)."""
    count = 0
    for i in range(L):
        reduction = i in (L // 3, 2 * L // 3)
        for pairs in arch['arch_reduction' if reduction else 'arch_normal'].values():
            for op, inp in pairs:
                stride = 2 if reduction and inp in (0, 1) else 1
                count += not (op == IDENTITY_ID and stride == 1)
    return count


SKIP_FROM_INPUTS = {'arch_normal': {'2': [[6, 0], [6, 1]], '3': [[6, 2], [2, 0]],
                                    '4': [[6, 3], [4, 1]], '5': [[6, 4], [6, 2]]},
                    'arch_reduction': {'2': [[6, 0], [6, 1]], '3': [[6, 2], [6, 0]],
                                       '4': [[6, 3], [5, 1]], '5': [[6, 4], [6, 1]]}}


@pytest.mark.parametrize('arch, L, literal', [(DARTS_V2, 3, 6 + 5 + 5), (DARTS_V2, 5, 6 * 3 + 5 * 2),
                                               (DARTS_V1, 3, 5 + 5 + 5), (SKIP_FROM_INPUTS, 3, 2 + 5 + 5)],
                         ids=['V2-3', 'V2-5', 'V1-3', 'skips'])
def test_every_op_but_the_plain_identity_gets_a_mask(arch, L, literal):
    drop = model_eval.DropPath()
    network(nn.Variable((2, 3, 32, 32)), arch, 4, L, drop_path=drop)
    assert len(drop.masks) == expected_masks(arch, L) == literal
    network(nn.Variable((2, 3, 32, 32)), arch, 4, L, test=True, drop_path=drop)
    assert len(drop.masks) == literal  # no drop path in the test graph


def test_drop_path_masks_are_per_sample_zero_or_one_over_keep():
    B = 8
    drop = model_eval.DropPath()
    network(nn.Variable((B, 3, 32, 32)), DARTS_V2, 4, 3, drop_path=drop)
    assert all(m.shape == (B, 1, 1, 1) for m in drop.masks)
    assert (drop.values() == 1).all() and drop.values().shape == (len(drop.masks), B)  # no drop until refreshed
    rng = np.random.RandomState(0)
    draws = []
    for _ in range(400):
        drop.refresh(rng, 0.2)
        draws.append(drop.values())
    draws = np.array(draws)  # (refreshes, masks, samples)
    assert set(np.unique(draws)) == {0.0, np.float32(1 / 0.8)}
    kept = (draws > 0).mean()
    assert abs(kept - 0.8) < 0.01, kept
    assert abs(draws.mean() - 1.0) < 0.015  # 1/keep scaling keeps the expectation
    mixed = np.mean([len(set(row)) > 1 for row in draws.reshape(-1, B)])
    assert mixed > 0.7  # per sample: a batch is not kept or dropped as a whole (P(mixed) = 0.83)
    assert not (draws[:, :1] == draws).all()  # the masks of different ops differ
    assert not (draws[:1] == draws).all()  # and change at every refresh
    drop.refresh(rng, 0.0)
    assert (drop.values() == 1).all()


def test_drop_path_multiplies_each_sample_by_its_mask():
    drop = model_eval.DropPath()
    h = nn.Variable.from_numpy_array(np.random.RandomState(10).randn(6, 2, 3, 3))
    y = drop(h)
    drop.refresh(np.random.RandomState(1), 0.5)
    y.forward()
    mask = drop.masks[0].d.reshape(6)
    assert set(mask) == {0.0, 2.0}
    np.testing.assert_allclose(y.d, h.d * mask[:, None, None, None], rtol=1e-6)


def test_drop_path_masks_are_one_upload_with_the_values_of_one_draw_per_op():
    """One array Variable per step, sliced per op; its masks are those of drawing each op's (B,)
    mask in turn from the generator (as when each op had its own Variable), forward included."""
    B, prob = 4, 0.4
    drop = model_eval.DropPath()
    logits, _ = network(nn.Variable((B, 3, 32, 32)), DARTS_V2, 4, 3, drop_path=drop)
    drop.refresh(np.random.RandomState(5), prob)
    rng = np.random.RandomState(5)
    expected = [(rng.random_sample((B, 1, 1, 1)) < 1 - prob) / (1 - prob) for _ in drop.masks]
    uploads = set()

    def visit(f):
        for v in f.inputs:
            if v.parent is None and not v.need_grad and v.shape[:2] == (B, len(drop.masks)):
                uploads.add(v)
    logits.visit(visit)
    assert len(uploads) == 1
    logits.forward()
    for mask, e in zip(drop.masks, expected):
        np.testing.assert_array_equal(mask.d, e.astype(np.float32))


def test_drop_path_refresh_is_a_function_of_the_generator():
    drops = []
    for _ in range(2):
        nn.clear_parameters()
        drop = model_eval.DropPath()
        network(nn.Variable((4, 3, 32, 32)), DARTS_V2, 4, 3, drop_path=drop)
        drop.refresh(np.random.RandomState([0, 3, 17]), 0.3)
        drops.append(drop.values())
    np.testing.assert_array_equal(drops[0], drops[1])


# ---------------------------------------------------------------- gradient clipping


def _tiny_training_graph(B=2):
    x, y = nn.Variable((B, 3, 32, 32)), nn.Variable((B, 1))
    logits, aux = network(x, DARTS_V2, 4, 3, auxiliary=True)
    loss = F.mean(F.softmax_cross_entropy(logits, y)) + 0.4 * F.mean(F.softmax_cross_entropy(aux, y))
    return x, y, loss


def _grads(params):
    return {k: p.g.astype(np.float64) for k, p in params.items()}


def _norm(grads):
    return math.sqrt(sum(float((g ** 2).sum()) for g in grads.values()))


def test_grad_clipper_global_norm_and_clipping_on_a_real_network():
    """The norm is summed in float32 over about 10^4 gradients (the reference in float64): equal
    to 4e-5 (a seed-dependent 1.1e-5 was seen), where a wrong norm is off by far more."""
    nn.seed(0)
    x, y, loss = _tiny_training_graph()
    params = nn.get_parameters(grad_only=True)
    solver = S.Sgd(0.1)
    solver.set_parameters(params)
    rng = np.random.RandomState(11)
    measure = numerics.GradClipper(params, 1e9)  # built once, before any backward
    norms = []
    for batch in range(2):  # two batches: the shared gradient buffers must be read afresh
        x.d, y.d = rng.randn(*x.shape), rng.randint(0, 10, y.shape)
        solver.zero_grad()
        loss.forward()
        loss.backward()
        before = _grads(params)
        norm = _norm(before)
        assert measure.global_norm() == pytest.approx(norm, rel=4e-5)
        norms.append(norm)
        # larger max_norm: nothing changes
        assert numerics.GradClipper(params, norm * 1.5)(solver) == pytest.approx(norm, rel=4e-5)
        for k, p in params.items():
            np.testing.assert_array_equal(p.g, before[k].astype(np.float32))
        # smaller max_norm: the norm becomes max_norm, every direction stays
        max_norm = norm / (3 + batch)
        assert numerics.GradClipper(params, max_norm)(solver) == pytest.approx(norm, rel=4e-5)
        after = _grads(params)
        assert _norm(after) == pytest.approx(max_norm, rel=4e-5)
        assert measure.global_norm() == pytest.approx(max_norm, rel=4e-5)
        for k in params:
            np.testing.assert_allclose(after[k], before[k] * max_norm / norm, rtol=1e-5, atol=1e-12)
    assert norms[0] != pytest.approx(norms[1], rel=1e-3)


# ---------------------------------------------------------------- learning rate


def test_set_momentum_lr_follows_pytorch_sgd_semantics():
    lrs = [0.1, 0.1, 0.05, 0.02, 0.02]
    rng = np.random.RandomState(12)
    w0 = rng.randn(4, 3)
    grads = [rng.randn(4, 3) for _ in lrs]

    def run_solver(set_lr):
        w = nn.Variable.from_numpy_array(w0.astype(np.float32), need_grad=True)
        solver = S.Momentum(lrs[0], 0.9)
        solver.set_parameters({'w': w})
        trace = []
        for lr, g in zip(lrs, grads):
            set_lr(solver, lr)
            w.g = g
            solver.update()
            trace.append(w.d.astype(np.float64))
        return trace, solver

    # PyTorch SGD(momentum=0.9): buf = 0.9 * buf + g; w -= lr * buf
    w, buf, torch_trace = w0.copy(), np.zeros_like(w0), []
    for lr, g in zip(lrs, grads):
        buf = 0.9 * buf + g
        w = w - lr * buf
        torch_trace.append(w.copy())
    trace, solver = run_solver(numerics.set_momentum_lr)
    for got, want in zip(trace, torch_trace):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    m = solver.get_states()['w'].pstate['m'].d  # nnabla's v == lr * PyTorch's buf (the unrolled step relies on it)
    np.testing.assert_allclose(m / solver.learning_rate(), buf, rtol=1e-5, atol=1e-6)
    assert solver.learning_rate() == pytest.approx(0.02)

    # plain set_learning_rate keeps nnabla's v = 0.9 v + lr g, which is not PyTorch's after a change
    plain, _ = run_solver(lambda s, lr: s.set_learning_rate(lr))
    np.testing.assert_allclose(plain[1], torch_trace[1], rtol=1e-5, atol=1e-6)  # same while lr is constant
    assert not np.allclose(plain[-1], torch_trace[-1], rtol=1e-4, atol=1e-5)
    w, v = w0.copy(), np.zeros_like(w0)
    for lr, g in zip(lrs, grads):
        v = 0.9 * v + lr * g
        w = w - v
    np.testing.assert_allclose(plain[-1], w, rtol=1e-5, atol=1e-6)


def test_cosine_lr():
    E, lr_max, lr_min = 10, 0.025, 0.001
    values = [numerics.cosine_lr(e, E, lr_max, lr_min) for e in range(E + 1)]
    assert values[0] == pytest.approx(lr_max, rel=1e-12)
    assert values[E // 2] == pytest.approx((lr_max + lr_min) / 2, rel=1e-12)
    assert values[E] == pytest.approx(lr_min, rel=1e-12)
    assert all(a > b for a, b in zip(values, values[1:]))
    assert all(lr_min <= v <= lr_max for v in values)
    for e in range(E + 1):
        assert values[e] == pytest.approx(lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * e / E)) / 2)
    assert numerics.cosine_lr(1, 2, 0.025, 0.0) == pytest.approx(0.0125)


def test_the_averager_keeps_the_mean_of_the_arrays_since_its_start():
    rng = np.random.RandomState(0)
    params = {'a': nn.Variable.from_numpy_array(rng.randn(3, 2).astype(np.float32)),
              'b': nn.Variable.from_numpy_array(rng.randn(4).astype(np.float32))}
    averager = numerics.Averager(params)
    seen = {k: [] for k in params}
    for _ in range(5):
        for k, p in params.items():
            p.d = rng.randn(*p.shape)
            seen[k].append(p.d.copy())
        averager.update()
    for k in params:
        assert np.allclose(averager.averages[k].data, np.mean(seen[k], axis=0), rtol=1e-6, atol=1e-7)


def test_nt_asgd_switches_when_the_loss_is_worse_than_the_best_before_the_last_five():
    losses = [5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 3.8]
    assert not numerics.asgd_due(losses[:5], 3.1)  # not more than 5 earlier losses
    assert not numerics.asgd_due(losses, 3.9)      # min(5.0, 4.0) = 4.0: better than that
    assert numerics.asgd_due(losses, 4.1) and numerics.asgd_due(losses[:6] + [2.9], 4.5)
