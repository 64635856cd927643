"""The op library of DARTS: the eight candidate ops on an edge, with the seed's op ids.

Every op takes ``(x, C, stride, bn)``: input, output channels, stride (2 on the edges out of
the two input nodes of a reduction cell) and ``bn``, the batch normalisation to end with
(``batch_norm`` with the affine and batch-statistics choice of the network being built).
Depthwise convolutions are grouped ``convolution``s: nnabla's ``depthwise_convolution``
has no double backward, and the exact hypergradient test needs it.
"""
import functools

import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF

OP_NAMES = ('dil_conv_3x3', 'dil_conv_5x5', 'sep_conv_3x3', 'sep_conv_5x5',
            'max_pool_3x3', 'avg_pool_3x3', 'identity', 'zero')
POOLS = (4, 5)
IDENTITY = 6
ZERO = 7


def batch_norm(x, affine, test, name='bn'):
    """BN over channels; without learnable scale and shift when not ``affine`` (search)."""
    return PF.batch_normalization(x, batch_stat=not test, no_scale=not affine, no_bias=not affine,
                                  name=name)


def conv(x, C, kernel, stride=1, pad=0, dilation=1, group=1, name='conv'):
    """Bias-free square convolution, as in every op of the paper's code."""
    return PF.convolution(x, C, (kernel, kernel), pad=(pad, pad), stride=(stride, stride),
                          dilation=(dilation, dilation), group=group, with_bias=False, name=name)


def relu_conv_bn(x, C, bn, kernel=1, stride=1, pad=0):
    """ReLU, convolution, BN: the preprocessing of a cell's inputs."""
    return bn(conv(F.relu(x), C, kernel, stride, pad))


def dil_conv(x, C, stride, bn, kernel, dilation=2):
    """ReLU, depthwise kxk dilated conv, 1x1 conv, BN."""
    c_in = x.shape[1]
    h = conv(F.relu(x), c_in, kernel, stride, dilation * (kernel - 1) // 2, dilation, c_in, 'dw')
    return bn(conv(h, C, 1, name='pw'))


def sep_conv(x, C, stride, bn, kernel):
    """Two rounds of (ReLU, depthwise kxk, 1x1, BN); the stride only in the first."""
    c_in = x.shape[1]
    for i, (s, c_out) in enumerate(((stride, c_in), (1, C))):
        with nn.parameter_scope('sep{}'.format(i)):
            h = conv(F.relu(x), c_in, kernel, s, kernel // 2, group=c_in, name='dw')
            x = bn(conv(h, c_out, 1, name='pw'))
    return x


def max_pool(x, C, stride, bn):
    """3x3 max pooling, pad 1."""
    return F.max_pooling(x, (3, 3), (stride, stride), pad=(1, 1))


def avg_pool(x, C, stride, bn):
    """3x3 average pooling, pad 1, the padding not counted in the mean."""
    return F.average_pooling(x, (3, 3), (stride, stride), pad=(1, 1), including_pad=False)


def factorized_reduce(x, C, bn):
    """ReLU, two 1x1 stride-2 convs (the second on the input shifted by one pixel), concat, BN."""
    h = F.relu(x)
    shifted = F.slice(h, start=(1, 1), stop=h.shape[2:], step=(1, 1))  # spatial axes only: any batch size
    return bn(F.concatenate(conv(h, C // 2, 1, 2, name='conv1'),
                            conv(shifted, C - C // 2, 1, 2, name='conv2'), axis=1))


def identity(x, C, stride, bn):
    """skip_connect: the input itself, or its factorized reduction at stride 2."""
    return x if stride == 1 else factorized_reduce(x, C, bn)


def zero(x, C, stride, bn):
    """The zero op (search only): zeros of the output's shape."""
    if stride > 1:
        x = F.slice(x, step=(1, 1, stride, stride))
    return F.mul_scalar(x, 0.0)


def concat_nodes(states):
    """A cell's output: its intermediate nodes concatenated on channels."""
    return states[0] if len(states) == 1 else F.concatenate(*states, axis=1)


OPS = (functools.partial(dil_conv, kernel=3), functools.partial(dil_conv, kernel=5),
       functools.partial(sep_conv, kernel=3), functools.partial(sep_conv, kernel=5),
       max_pool, avg_pool, identity, zero)
