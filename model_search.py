"""The DARTS supernet: the shared backbone with a mixed op on every edge of every cell.

Every edge i->j of a cell is a mixed op: sum_k softmax(alpha_ij)_k * op_k(x_i) over the eight
ops (the alphas' rows follow ``genotype.edges``); BN without learnable affine everywhere in the
cells, and a BN after each pooling op. The zero op (the last op id) takes part in the softmax,
but its output (zeros) is never computed.

Shapes, parameter counts and the derivation of cells: docs/reference.md.
"""
import functools

import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I

from backbone import backbone, preprocess
from genotype import ALPHA_NAMES, edges
from operations import IDENTITY, OP_NAMES, OPS, POOLS, ZERO, NodeOutput, batch_norm, concat_nodes, scale

ALPHA_SCOPE = 'alpha'


def alphas(num_nodes):
    """The two (edges x ops) alpha Parameters, created as 1e-3 * N(0, 1) on first call."""
    shape = (len(edges(num_nodes)), len(OP_NAMES))
    with nn.parameter_scope(ALPHA_SCOPE):
        return [nn.parameter.get_parameter_or_create(name, shape, I.NormalInitializer(1e-3))
                for name in ALPHA_NAMES]


def split_parameters(params):
    """(weights, alphas): the parameter dict split for the two solvers."""
    prefix = ALPHA_SCOPE + '/'
    return ({k: v for k, v in params.items() if not k.startswith(prefix)},
            {k: v for k, v in params.items() if k.startswith(prefix)})


def op_weights(alpha):
    """softmax(alpha) as one (1, 1) Variable per edge and non-zero op: built once, used by every cell."""
    w = F.softmax(alpha, axis=1)
    return [[F.slice(w, (e, k), (e + 1, k + 1)) for k in range(ZERO)] for e in range(w.shape[0])]


def mixed_op(x, weights, C, stride, bn):
    """sum_k w_k op_k(x) over the non-zero ops (w_zero * 0 adds nothing). Each w_k is the gamma of
    the BN that ends op k (the pools get theirs here); only the plain identity is scaled apart."""
    terms = []
    for k, (op, w) in enumerate(zip(OPS, weights)):
        with nn.parameter_scope('op{}'.format(k)):
            if k == IDENTITY and stride == 1:
                terms.append(scale(x.h, w))
            elif k in POOLS:
                terms.append(bn(op(x, C, stride, bn), gamma=w))
            else:
                terms.append(op(x, C, stride, bn, out_bn=functools.partial(bn, gamma=w)))
    return functools.reduce(F.add2, terms)


def cell(s0, s1, weights, num_nodes, C, reduction, reduction_prev, bn):
    """One supernet cell: the concatenation of its intermediate nodes."""
    states = preprocess(s0, s1, C, reduction_prev, bn)
    for j in range(2, num_nodes - 1):
        hs = []
        for e, (i, node) in enumerate(edges(num_nodes)):
            if node == j:
                with nn.parameter_scope('edge{}_{}'.format(i, j)):
                    hs.append(mixed_op(states[i], weights[e], C, 2 if reduction and i < 2 else 1, bn))
        states.append(NodeOutput(functools.reduce(F.add2, hs)))  # a chain of add2 beats add_n on the CPU
    return concat_nodes(states[2:])


def supernet(x, C, num_cells, num_nodes, num_classes=10):
    """Logits of the search network on ``x``, with the alphas of ``alphas(num_nodes)``."""
    bn = functools.partial(batch_norm, affine=False, test=False)
    weights = [op_weights(a) for a in alphas(num_nodes)]

    def make_cell(s0, s1, C_cell, reduction, reduction_prev):
        return cell(s0, s1, weights[reduction], num_nodes, C_cell, reduction, reduction_prev, bn)

    return backbone(x, C, num_cells, make_cell, num_classes=num_classes)
