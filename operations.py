"""The op library of the convolutional search spaces: the candidate ops of an edge and the blocks
around the cells, and each space's op table (``OpTable``): DARTS's (``DARTS``: ``OPS``, with the
seed's op ids) and NAS-Bench-201's (``NAS_BENCH_201``).

Every op takes ``(x, C, stride, bn, out_bn=None)``: the input ``NodeOutput``, output channels, stride
(2 on the edges out of the two input nodes of a DARTS reduction cell), ``bn``, the batch normalisation
of the network being built (``batch_norm`` with its affine and batch-statistics choice), and
``out_bn``, the BN that ends the op if it ends with one (default ``bn``; the pools do not).

Some formulations here are chosen for speed on nnabla's CPU kernels, each with the values and
gradients of the plain one (tested): one ReLU per node shared by all the ops that leave it
(``NodeOutput``); ``scale`` as a batched matrix product instead of a broadcasting multiply; a BN's
gamma as a mixed op's weight; ``depthwise`` convolution rather than a grouped one.

What each op computes: docs/reference.md.
"""
import collections
import functools

import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I
import nnabla.parametric_functions as PF

from device import float_context

OP_NAMES = ('dil_conv_3x3', 'dil_conv_5x5', 'sep_conv_3x3', 'sep_conv_5x5',
            'max_pool_3x3', 'avg_pool_3x3', 'identity', 'zero')
POOLS = (4, 5)
IDENTITY = 6
ZERO = 7
OpTable = collections.namedtuple('OpTable', 'names functions zero identity pools pool_bn')
OpTable.__doc__ = """A space's candidate ops: their ``names`` and ``functions`` in op-id order, the ids of
the zero op (never computed in a mixed op: it adds nothing), of the identity and of the pools, and
whether the supernet puts a BN (no affine) after a pool (DARTS's search code does; NAS-Bench-201's
does not)."""


def scale(h, s):
    """h * s for ``s`` of shape (1, 1, ...) (one factor) or (B, 1, ...) (one per sample), as a
    batched (1 x 1) @ (1 x N) product: nnabla's broadcasting multiply is several times slower."""
    b = s.shape[0]
    return F.reshape(F.batch_matmul(F.reshape(s, (b, 1, 1)), F.reshape(h, (b, 1, h.size // b))), h.shape)


class NodeOutput:
    """A node's output ``h`` and its ReLU, built on first use and then shared: every op that
    leaves a node and starts with a ReLU reads this one (one ReLU output in memory, not one per op)."""

    def __init__(self, h):
        self.h = h

    @functools.cached_property
    def relu(self):
        return F.relu(self.h)


def batch_norm(x, affine, test, name='bn', gamma=None, beta=None):
    """BN over channels; without learnable scale and shift when not ``affine`` (search). A (1, 1)
    Variable ``gamma`` (without affine) is the BN's scale: how a mixed op weighs an op that ends
    with BN, at no extra cost; a (1, 1) ``beta`` with it, the BN's shift (GDAS's added weights)."""
    if gamma is None:
        return PF.batch_normalization(x, batch_stat=not test, no_scale=not affine, no_bias=not affine,
                                      name=name)
    shape = (1, x.shape[1], 1, 1)
    with nn.parameter_scope(name), nn.parameter_scope('bn'):  # PF.batch_normalization's names
        mean = nn.parameter.get_parameter_or_create('mean', shape, I.ConstantInitializer(0), False)
        var = nn.parameter.get_parameter_or_create('var', shape, I.ConstantInitializer(1), False)
    shift = None if beta is None else F.broadcast(F.reshape(beta, (1, 1, 1, 1)), shape)
    return F.batch_normalization(x, shift, F.broadcast(F.reshape(gamma, (1, 1, 1, 1)), shape), mean, var,
                                 batch_stat=not test)


def conv(x, C, kernel, stride=1, pad=0, name='conv'):
    """Bias-free square convolution, as in every op of the paper's code."""
    return PF.convolution(x, C, (kernel, kernel), pad=(pad, pad), stride=(stride, stride), with_bias=False,
                          name=name)


def depthwise(x, kernel, stride=1, pad=0, dilation=1):
    """Bias-free depthwise kxk convolution (weights (C, k, k), one filter per channel), computed in
    float even under --type-config half: nnabla-ext-cuda's depthwise kernel sums each weight's
    gradient over the batch and the map in the input's type, which in half loses the small terms
    and may overflow."""
    with nn.context_scope(float_context(nn.get_current_context())):
        return PF.depthwise_convolution(x, (kernel, kernel), pad=(pad, pad), stride=(stride, stride),
                                        dilation=(dilation, dilation), with_bias=False, name='dw')


def relu_conv_bn(x, C, bn, kernel=1, stride=1, pad=0):
    """ReLU, convolution, BN of a NodeOutput: the preprocessing of a cell's inputs."""
    return bn(conv(x.relu, C, kernel, stride, pad))


def dil_conv(x, C, stride, bn, kernel, dilation=2, out_bn=None):
    """ReLU, depthwise kxk dilated conv, 1x1 conv, BN."""
    h = depthwise(x.relu, kernel, stride, dilation * (kernel - 1) // 2, dilation)
    return (out_bn or bn)(conv(h, C, 1, name='pw'))


def sep_conv(x, C, stride, bn, kernel, out_bn=None):
    """Two rounds of (ReLU, depthwise kxk, 1x1, BN); the stride only in the first."""
    with nn.parameter_scope('sep0'):
        h = bn(conv(depthwise(x.relu, kernel, stride, kernel // 2), x.h.shape[1], 1, name='pw'))
    with nn.parameter_scope('sep1'):
        return (out_bn or bn)(conv(depthwise(F.relu(h), kernel, 1, kernel // 2), C, 1, name='pw'))


def max_pool(x, C, stride, bn, out_bn=None):
    """3x3 max pooling, pad 1."""
    return F.max_pooling(x.h, (3, 3), (stride, stride), pad=(1, 1))


def avg_pool(x, C, stride, bn, out_bn=None):
    """3x3 average pooling, pad 1, the padding not counted in the mean."""
    return F.average_pooling(x.h, (3, 3), (stride, stride), pad=(1, 1), including_pad=False)


def factorized_reduce(x, C, bn):
    """ReLU, two 1x1 stride-2 convs (the second on the input shifted by one pixel), concat, BN."""
    h = x.relu
    shifted = F.slice(h, start=(1, 1), stop=h.shape[2:], step=(1, 1))  # spatial axes only: any batch size
    return bn(F.concatenate(conv(h, C // 2, 1, 2, name='conv1'),
                            conv(shifted, C - C // 2, 1, 2, name='conv2'), axis=1))


def identity(x, C, stride, bn, out_bn=None):
    """skip_connect: the input itself, or its factorized reduction at stride 2."""
    return x.h if stride == 1 else factorized_reduce(x, C, out_bn or bn)


def zero(x, C, stride, bn, out_bn=None):
    """The zero op (search only): zeros of the output's shape."""
    h = x.h if stride == 1 else F.slice(x.h, step=(1, 1, stride, stride))
    return F.mul_scalar(h, 0.0)


def nor_conv(x, C, stride, bn, kernel, out_bn=None):
    """NAS-Bench-201's nor_conv: ReLU, kxk convolution (pad k//2, no bias), BN."""
    return (out_bn or bn)(conv(x.relu, C, kernel, stride, kernel // 2))


def residual_block(x, C, bn):
    """NAS-Bench-201's reduction between stages, on NodeOutput ``x``: ReLU, 3x3 conv of stride 2, BN,
    ReLU, 3x3 conv, BN, plus the shortcut: 2x2 average pooling of stride 2 and a 1x1 conv."""
    with nn.parameter_scope('a'):
        h = relu_conv_bn(x, C, bn, 3, 2, 1)
    with nn.parameter_scope('b'):
        h = bn(conv(F.relu(h), C, 3, pad=1))
    with nn.parameter_scope('shortcut'):
        shortcut = conv(F.average_pooling(x.h, (2, 2), (2, 2)), C, 1)
    return F.add2(shortcut, h)


def global_average_pool(h):
    """(B, C, H, W) -> (B, C): the mean over the spatial axes. F.mean rather than
    F.global_average_pooling, which nnabla-ext-cuda 1.39 does not implement (every call would
    copy the activations to the host and back)."""
    return F.mean(h, axis=(2, 3))


def classifier(h, num_classes):
    """Global average pooling and the affine to the classes ('classifier/affine/W', (C, classes))."""
    with nn.parameter_scope('classifier'):
        return PF.affine(global_average_pool(h), num_classes)


def concat_nodes(nodes):
    """A cell's output NodeOutput: its intermediate Nodes concatenated on channels."""
    return NodeOutput(nodes[0].h if len(nodes) == 1 else F.concatenate(*[n.h for n in nodes], axis=1))


OPS = (functools.partial(dil_conv, kernel=3), functools.partial(dil_conv, kernel=5),
       functools.partial(sep_conv, kernel=3), functools.partial(sep_conv, kernel=5),
       max_pool, avg_pool, identity, zero)
DARTS = OpTable(OP_NAMES, OPS, ZERO, IDENTITY, POOLS, True)
NAS_BENCH_201 = OpTable(('none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3'),
                        (zero, identity, functools.partial(nor_conv, kernel=1), functools.partial(nor_conv, kernel=3),
                         avg_pool), 0, 1, (4,), False)
