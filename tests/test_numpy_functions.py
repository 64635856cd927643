"""numpy_functions: numpy's products in a float CPU context, nnabla's elsewhere, the same numbers."""
import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import numpy_functions
from numpy_functions import multiply, product, softmax_cross_entropy, subtract, tanh


def variables(rng, *shapes):
    return [nn.Variable.from_numpy_array(rng.randn(*s).astype(np.float32), need_grad=True) for s in shapes]


def gradients(y, leaves, rng):
    """The leaves' gradients of sum(y * weights) + sum(leaves[0] ** 2): the first leaf is used twice
    (its gradient accumulates), each output weighed differently; the forward clears the buffers
    that no gradient needs."""
    weights = rng.randn(*y.shape).astype(np.float32)
    loss = F.add2(F.sum(F.mul2(y, nn.Variable.from_numpy_array(weights))), F.sum(F.pow_scalar(leaves[0], 2.0)))
    for v in leaves:
        v.grad.zero()
    loss.forward(clear_no_need_grad=True)
    loss.backward(clear_buffer=True)
    return weights


@pytest.mark.parametrize('transpose_b, with_bias', [(False, False), (True, True), (False, True)])
def test_the_product_and_its_gradients_are_numpy_s(transpose_b, with_bias, any_size):
    """a and b come from functions, so a forward that clears buffers would clear them unless the
    product declares that it needs them."""
    rng = np.random.RandomState(0)
    a, b, bias = variables(rng, (5, 3), (4, 3) if transpose_b else (3, 4), (4,))
    y = product(F.mul_scalar(a, 1.0), F.mul_scalar(b, 1.0), bias if with_bias else None, transpose_b=transpose_b)
    assert y.parent.info.type_name == 'NumpyProduct' and y.shape == (5, 4)
    B = b.d.T if transpose_b else b.d
    y.forward()
    assert np.allclose(y.d, a.d @ B + (bias.d if with_bias else 0), atol=1e-5)
    weights = gradients(y, [a, b, bias], rng)
    assert np.allclose(a.g, weights @ B.T + 2 * a.d, atol=1e-5)
    assert np.allclose(b.g, (a.d.T @ weights).T if transpose_b else a.d.T @ weights, atol=1e-5)
    assert np.allclose(bias.g, weights.sum(axis=0) if with_bias else 0, atol=1e-5)


@pytest.mark.parametrize('b_shape', [(2, 3, 4), (2, 3, 1), (1, 3, 4)])
def test_the_elementwise_product_and_its_gradients_broadcast_b(b_shape, any_size):
    rng = np.random.RandomState(1)
    a, b = variables(rng, (2, 3, 4), b_shape)
    y = multiply(F.mul_scalar(a, 1.0), F.mul_scalar(b, 1.0))
    assert y.parent.info.type_name == 'NumpyMultiply'
    y.forward()
    assert np.array_equal(y.d, a.d * b.d)
    weights = gradients(y, [a, b], rng)
    assert np.allclose(a.g, weights * b.d + 2 * a.d, atol=1e-5)
    axes = tuple(k for k, n in enumerate(b_shape) if n == 1)
    assert np.allclose(b.g, (weights * a.d).sum(axis=axes, keepdims=True), atol=1e-5)


def test_tanh_and_its_gradient_are_numpy_s(any_size):
    rng = np.random.RandomState(5)
    x, = variables(rng, (3, 4))
    y = tanh(F.mul_scalar(x, 1.0))
    assert y.parent.info.type_name == 'NumpyTanh'
    y.forward()
    assert np.allclose(y.d, np.tanh(x.d), atol=1e-6)
    weights = gradients(y, [x], rng)
    assert np.allclose(x.g, weights * (1 - np.tanh(x.d) ** 2) + 2 * x.d, atol=1e-5)


def test_the_softmax_cross_entropy_and_its_gradient_are_numpy_s(any_size):
    rng = np.random.RandomState(6)
    x, = variables(rng, (6, 5))
    x.d *= 30  # rows whose exp would overflow without the shift
    labels = nn.Variable.from_numpy_array(rng.randint(0, 5, (6, 1)))
    y = softmax_cross_entropy(F.mul_scalar(x, 1.0), labels)
    assert y.parent.info.type_name == 'NumpySoftmaxCrossEntropy' and y.shape == (6, 1)
    y.forward()
    z = x.d.astype(np.float64)
    log_softmax = z - z.max(axis=1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(axis=1, keepdims=True))
    rows = np.arange(6), labels.d[:, 0]
    assert np.allclose(y.d[:, 0], -log_softmax[rows], rtol=1e-5, atol=1e-5)
    weights = gradients(y, [x], rng)
    expected = np.exp(log_softmax)
    expected[rows] -= 1
    assert np.allclose(x.g, weights * expected + 2 * x.d, atol=1e-4)


def test_the_difference_is_sub2_s_to_the_bit():
    a, b = variables(np.random.RandomState(2), (50, 7), (50, 7))
    ours, theirs = subtract(a, b), F.sub2(a, b)
    F.sink(ours, theirs).forward()
    assert np.array_equal(ours.d, theirs.d)


def test_they_are_nnabla_s_outside_a_float_cpu_context_and_on_small_arrays(monkeypatch, request):
    contexts = {'cpu:float': True, 'cpu:half': False, 'cudnn:float': False, 'cudnn:half': False, 'cuda:float': False}
    for backend, numpy_s in contexts.items():
        assert numpy_functions.on_numpy(nn.Context([backend, 'cpu:float'])) is numpy_s, backend
    a, b = variables(np.random.RandomState(3), (2, 3), (4, 3))
    labels = nn.Variable.from_numpy_array(np.array([[1], [2]]))
    built = (lambda: (product(a, b, transpose_b=True), multiply(a, a), tanh(a), softmax_cross_entropy(a, labels)))
    names = ['Affine', 'Mul2', 'Tanh', 'SoftmaxCrossEntropy']
    assert [v.parent.info.type_name for v in built()] == names  # small
    c, d = variables(np.random.RandomState(3), (128, 128), (128, 64))
    assert product(c, d).parent.info.type_name == 'NumpyProduct'  # 2 ** 20 multiply-adds
    assert multiply(c, c).parent.info.type_name == 'NumpyMultiply'  # 16,384 values
    assert tanh(c).parent.info.type_name == 'NumpyTanh'
    monkeypatch.setattr(numpy_functions, 'on_numpy', lambda context: False)
    request.getfixturevalue('any_size')
    y, z, t, e = built()
    assert [v.parent.info.type_name for v in (y, z, t, e)] == names
    F.sink(y, z, t, e).forward()
    assert np.allclose(y.d, a.d @ b.d.T, atol=1e-6) and np.array_equal(z.d, a.d * a.d)


def test_each_form_is_numpy_s_from_its_own_threshold():
    """Each function switches at its MIN_WORK: nnabla's one value (multiply-add) below, numpy's at."""
    least = numpy_functions.MIN_WORK
    label = nn.Variable((1, 1))

    def row(n):
        return nn.Variable((1, n))

    for n, name in ((least['multiply'] - 1, 'Mul2'), (least['multiply'], 'NumpyMultiply')):
        assert multiply(row(n), row(n)).parent.info.type_name == name
    for n, name in ((least['tanh'] - 1, 'Tanh'), (least['tanh'], 'NumpyTanh')):
        assert tanh(row(n)).parent.info.type_name == name
    for n, name in ((least['softmax_cross_entropy'] - 1, 'SoftmaxCrossEntropy'),
                    (least['softmax_cross_entropy'], 'NumpySoftmaxCrossEntropy')):
        assert softmax_cross_entropy(row(n), label).parent.info.type_name == name
    assert least['product'] == 1024 * 1024 == 1023 * 1025 + 1
    assert product(row(1023), nn.Variable((1023, 1025))).parent.info.type_name == 'Affine'
    assert product(row(1024), nn.Variable((1024, 1024))).parent.info.type_name == 'NumpyProduct'


@pytest.mark.parametrize('build, message', [(lambda a, b: product(a, b), 'do not multiply'),
                                            (lambda a, b: multiply(a, b), 'does not broadcast'),
                                            (lambda a, b: softmax_cross_entropy(a, b), 'labels')])
def test_shapes_that_do_not_fit_are_refused_when_built(build, message):
    a, b = variables(np.random.RandomState(4), (2, 3), (4, 3))
    with pytest.raises(ValueError, match=message):
        build(a, b)
