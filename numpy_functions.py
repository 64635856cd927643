"""The forms of the functions that nnabla's CPU backend computes slowly: matrix products,
elementwise products, tanh and the softmax cross entropy by numpy, differences by Add2.

nnabla 1.39's CPU wheel multiplies matrices with its own GEMM, linked to no BLAS: the recurrent
retraining's decoder product (2,240 x 850) (850 x 10,000), forward and backward, takes 4.8 s in
``F.affine`` against 0.85 s in numpy (OpenBLAS, one thread). Its binary elementwise functions
other than Add2 (Mul2, Sub2, Div2, ...) take about 1 ms forward and 2 ms backward on 64 x 850
values, twenty times Add2; its Tanh 0.9 ms forward; its softmax cross entropy about 50 ns a logit.
They are most of the recurrent steps (docs/recurrent.md). So ``subtract`` is Add2 of the
negation, and in a float CPU context ``product``, ``multiply``, ``tanh`` and
``softmax_cross_entropy`` build functions whose forward and backward are numpy's, on the arrays in
place, where the arrays are large enough (``MIN_WORK``: a numpy function's forward and backward
cost 60 to 115 us more than their arithmetic; benchmarks/numpy_crossover.py); elsewhere (cudnn,
small arrays) they are nnabla's. The numpy functions have no double backward: nnabla
refuses ``nn.grad`` through them.
"""
import numpy as np

import nnabla as nn
import nnabla.functions as F
from nnabla.function import PythonFunction


# The work (values; a product's multiply-adds) from which each numpy form is used: the power of two
# at or above where it becomes the faster one, on one thread (benchmarks/numpy_crossover.py;
# docs/reference.md).
MIN_WORK = {'multiply': 2048, 'tanh': 8192, 'softmax_cross_entropy': 16384, 'product': 2 ** 20}


def on_numpy(context):
    """Whether functions built in ``context`` are numpy's: a CPU context in float."""
    return context.backend[0] == 'cpu:float'


def numpy_s(work, function):
    """Whether ``function`` (a key of MIN_WORK) on this much ``work`` is built as numpy's in the
    current context."""
    return work >= MIN_WORK[function] and on_numpy(nn.get_current_context())


def product(a, b, bias=None, transpose_b=False):
    """a b (+ bias) of the 2-D ``a`` (M x K) and ``b`` (K x N, or N x K with ``transpose_b``), as
    ``F.affine`` computes it, built for the current context."""
    inner, columns = b.shape[::-1] if transpose_b else b.shape
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != inner or (bias is not None and bias.shape != (columns,)):
        raise ValueError('product: shapes {} do not multiply'.format([v.shape for v in (a, b, bias) if v is not None]))
    extra = () if bias is None else (bias,)
    if numpy_s(a.shape[0] * inner * columns, 'product'):
        return NumpyProduct(nn.get_current_context(), transpose_b)(a, b, *extra)
    return F.affine(a, F.transpose(b, (1, 0)) if transpose_b else b, *extra)


def multiply(a, b):
    """a * b elementwise, ``b`` of ``a``'s shape or of ones where it is broadcast (as ``F.mul2``)."""
    if b.ndim != a.ndim or any(m not in (n, 1) for n, m in zip(a.shape, b.shape)):
        raise ValueError('multiply: shape {} does not broadcast to {}'.format(b.shape, a.shape))
    return NumpyMultiply(nn.get_current_context())(a, b) if numpy_s(a.size, 'multiply') else F.mul2(a, b)


def tanh(x):
    """tanh elementwise (nnabla's CPU Tanh: 0.9 ms forward on 64 x 850 values, numpy's 0.26 ms)."""
    return NumpyTanh(nn.get_current_context())(x) if numpy_s(x.size, 'tanh') else F.tanh(x)


def subtract(a, b):
    """a - b as Add2 of a and -b: the same numbers as ``F.sub2`` (negation is exact), and on the CPU
    twenty times faster; in any context."""
    return F.add2(a, F.mul_scalar(b, -1.0))


def softmax_cross_entropy(logits, labels):
    """-log softmax(logits)[label] of every row of the (N x C) ``logits``, labels (N x 1), as
    ``F.softmax_cross_entropy`` (nnabla's CPU one: 4 s forward and backward on 8,960 x 10,000)."""
    if logits.ndim != 2 or labels.shape != (logits.shape[0], 1):
        raise ValueError('softmax_cross_entropy: labels {} for logits {}'.format(labels.shape, logits.shape))
    return (NumpySoftmaxCrossEntropy(nn.get_current_context())(logits, labels)
            if numpy_s(logits.size, 'softmax_cross_entropy') else F.softmax_cross_entropy(logits, labels))


def _write(target, value, accumulate):
    """target += value, or target = value: nnabla's rule for accumulating gradients."""
    if accumulate:
        target += value
    else:
        target[...] = value


def _product_into(target, x, y, accumulate):
    """``_write`` of x y, into ``target`` without a temporary when not accumulating."""
    if accumulate:
        target += x @ y
    else:
        np.matmul(x, y, out=target)


class NumpyFunction(PythonFunction):
    """One output, which the gradient does not read."""

    @property
    def name(self):
        return self.__class__.__name__

    def min_outputs(self):
        return 1

    def grad_depends_output_data(self, i, o):
        return False

    def grad_depends_input_data(self, i, j):
        return i != j  # of two inputs, each one's gradient reads the other


class NumpyProduct(NumpyFunction):
    """y = a b (+ bias)."""

    def __init__(self, ctx, transpose_b):
        super().__init__(ctx)
        self.transpose_b = transpose_b

    def setup_impl(self, inputs, outputs):
        b = inputs[1].shape
        outputs[0].reset_shape((inputs[0].shape[0], b[0] if self.transpose_b else b[1]), True)

    def _b(self, array):
        return array.T if self.transpose_b else array

    def forward_impl(self, inputs, outputs):
        y = outputs[0].data.get_data('w')
        np.matmul(inputs[0].data.get_data('r'), self._b(inputs[1].data.get_data('r')), out=y)
        if len(inputs) > 2:
            y += inputs[2].data.get_data('r')

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        dy = outputs[0].grad.get_data('r')
        if propagate_down[0]:
            da = inputs[0].grad.get_data('rw' if accum[0] else 'w')
            _product_into(da, dy, self._b(inputs[1].data.get_data('r')).T, accum[0])
        if propagate_down[1]:
            a = inputs[0].data.get_data('r')
            db = inputs[1].grad.get_data('rw' if accum[1] else 'w')
            _product_into(db, *((dy.T, a) if self.transpose_b else (a.T, dy)), accum[1])
        if len(inputs) > 2 and propagate_down[2]:
            _write(inputs[2].grad.get_data('rw' if accum[2] else 'w'), dy.sum(axis=0), accum[2])

    def grad_depends_input_data(self, i, j):
        return i < 2 and j == 1 - i


class NumpyMultiply(NumpyFunction):
    """y = a * b, b broadcast along its axes of size 1."""

    def setup_impl(self, inputs, outputs):
        outputs[0].reset_shape(inputs[0].shape, True)

    def forward_impl(self, inputs, outputs):
        np.multiply(inputs[0].data.get_data('r'), inputs[1].data.get_data('r'), out=outputs[0].data.get_data('w'))

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        dy = outputs[0].grad.get_data('r')
        for i in (0, 1):
            if not propagate_down[i]:
                continue
            other, target = inputs[1 - i].data.get_data('r'), inputs[i].grad.get_data('rw' if accum[i] else 'w')
            broadcast = tuple(k for k, (n, m) in enumerate(zip(dy.shape, inputs[i].shape)) if m != n)
            if broadcast:
                _write(target, (dy * other).sum(axis=broadcast, keepdims=True), accum[i])
            elif accum[i]:
                target += dy * other
            else:
                np.multiply(dy, other, out=target)


class NumpyTanh(NumpyFunction):
    """y = tanh(x); its gradient reads y, not x."""

    def setup_impl(self, inputs, outputs):
        outputs[0].reset_shape(inputs[0].shape, True)

    def forward_impl(self, inputs, outputs):
        np.tanh(inputs[0].data.get_data('r'), out=outputs[0].data.get_data('w'))

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        if propagate_down[0]:
            y = outputs[0].data.get_data('r')
            _write(inputs[0].grad.get_data('rw' if accum[0] else 'w'), outputs[0].grad.get_data('r') * (1 - y * y),
                   accum[0])

    def grad_depends_output_data(self, i, o):
        return True

    def grad_depends_input_data(self, i, j):
        return False


class NumpySoftmaxCrossEntropy(NumpyFunction):
    """y = logsumexp(x) - x[label] per row; the gradient dy (softmax(x) - onehot(label)) recomputes
    the softmax rather than keeping a second array of the logits' size."""

    def setup_impl(self, inputs, outputs):
        outputs[0].reset_shape(inputs[1].shape, True)

    @staticmethod
    def _shifted_exp(x):
        """(exp(x - max), x - max) of every row."""
        shifted = x - x.max(axis=1, keepdims=True)
        return np.exp(shifted), shifted

    @staticmethod
    def _labels(inputs):
        return inputs[1].data.get_data('r').astype(np.intp).reshape(-1)

    def forward_impl(self, inputs, outputs):
        x, labels = inputs[0].data.get_data('r'), self._labels(inputs)
        e, shifted = self._shifted_exp(x)
        y = outputs[0].data.get_data('w')
        y[:, 0] = np.log(e.sum(axis=1)) - shifted[np.arange(len(labels)), labels]

    def backward_impl(self, inputs, outputs, propagate_down, accum):
        if not propagate_down[0]:
            return
        labels = self._labels(inputs)
        e, _ = self._shifted_exp(inputs[0].data.get_data('r'))
        e /= e.sum(axis=1, keepdims=True)
        e[np.arange(len(labels)), labels] -= 1
        e *= outputs[0].grad.get_data('r')
        _write(inputs[0].grad.get_data('rw' if accum[0] else 'w'), e, accum[0])

    def grad_depends_input_data(self, i, j):
        return i == 0
