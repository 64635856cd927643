"""The DARTS supernet: the shared backbone with a mixed op on every edge of every cell.

Every edge i->j of a cell is a mixed op: sum_k softmax(alpha_ij)_k * op_k(x_i) over the ops of
``operations.OPS`` (the alphas' rows follow ``genotype.edges``, their columns ``OPS``); BN without learnable affine everywhere in the
cells, and a BN after each pooling op. The zero op (the last op id) takes part in the softmax,
but its output (zeros) is never computed.

Two options of PC-DARTS (Xu et al., ICLR 2020), both off by default (the plain DARTS graph):
partial channels K, where only the first C/K channels of an edge's input go through its mixed op
(ops of C/K channels) and the others bypass it (through a 2x2 max pooling of stride 2 on a
reduction edge), the two parts concatenated and the channels shuffled with K groups; and edge
normalisation, where each node weighs its incoming edges by a softmax over their betas.

Shapes, parameter counts and the derivation of cells: docs/reference.md.
"""
import functools

import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I

from backbone import STEM_MULTIPLIER, backbone, preprocess
from genotype import ALPHA_NAMES, BETA_NAMES, edges, incoming
from operations import IDENTITY, OP_NAMES, OPS, POOLS, ZERO, NodeOutput, batch_norm, concat_nodes, scale

ALPHA_SCOPE = 'alpha'


def alphas(num_nodes, names=ALPHA_NAMES, ops=len(OP_NAMES)):
    """The two (edges x ops) alpha Parameters (or, with BETA_NAMES and ops=1, the (edges x 1)
    betas of edge normalisation), created as 1e-3 * N(0, 1) on first call."""
    with nn.parameter_scope(ALPHA_SCOPE):
        return [nn.parameter.get_parameter_or_create(name, (len(edges(num_nodes)), ops), I.NormalInitializer(1e-3))
                for name in names]


def is_alpha(name):
    """Whether the parameter ``name`` is an alpha (or beta): its full name ('alpha/alpha_normal') or
    the name of the graph's own Variable of it ('alpha_normal')."""
    return name.split('/')[-1] in ALPHA_NAMES + BETA_NAMES


def split_parameters(params):
    """(weights, alphas): the parameter dict split for the two solvers."""
    return ({k: v for k, v in params.items() if not is_alpha(k)}, {k: v for k, v in params.items() if is_alpha(k)})


def op_weights(alpha):
    """softmax(alpha) as one (1, 1) Variable per edge and non-zero op: built once, used by every cell."""
    w = F.softmax(alpha, axis=1)
    return [[F.slice(w, (e, k), (e + 1, k + 1)) for k in range(ZERO)] for e in range(w.shape[0])]


def mixed_op(x, weights, C, stride, bn):
    """sum_k w_k op_k(x) over the non-zero ops (w_zero * 0 adds nothing). Each w_k is the gamma of
    the BN that ends op k (the pools get theirs here); only the plain identity is scaled apart."""
    # w_k * BN(h) = BN(h) with gamma w_k: the same sum without a multiply per op; the plain sum,
    # sum_k w_k op_k(x), is tests/test_search.py's plain_mixed_op (test_fast_paths.py checks both agree)
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


def channel_shuffle(h, groups):
    """Interleave the channels of ``groups`` equal groups: (B, g, C/g, H, W) -> (B, C/g, g, H, W)."""
    b, c, height, width = h.shape
    h = F.reshape(h, (b, groups, c // groups, height, width))
    return F.reshape(F.transpose(h, (0, 2, 1, 3, 4)), (b, c, height, width))


def partial_input(x, k):
    """The NodeOutput of the first C/k channels of ``x`` (its ReLU a slice of x's shared one)."""
    c = x.h.shape[1] // k
    part = NodeOutput(F.slice(x.h, stop=(x.h.shape[0], c) + x.h.shape[2:]))
    part.relu = F.slice(x.relu, stop=(x.h.shape[0], c) + x.h.shape[2:])
    return part


def partial_mixed_op(x, part, weights, C, stride, bn, k):
    """PC-DARTS's edge: the mixed op on ``part`` (the first C/k channels of ``x``), the other
    channels bypassing it, concatenated and shuffled with k groups."""
    h = mixed_op(part, weights, C // k, stride, bn)
    rest = F.slice(x.h, start=(0, part.h.shape[1], 0, 0))
    if stride == 2:
        rest = F.max_pooling(rest, (2, 2), (2, 2))
    return channel_shuffle(F.concatenate(h, rest, axis=1), k)


def edge_weights(beta, num_nodes):
    """Edge normalisation: per node, softmax over the betas of its incoming edges, as one (1, 1)
    Variable per edge."""
    weights = []
    for j in range(2, num_nodes - 1):
        rows = incoming(num_nodes, j)
        w = F.softmax(F.slice(beta, (rows[0], 0), (rows[-1] + 1, 1)), axis=0)
        weights += [F.slice(w, (r, 0), (r + 1, 1)) for r in range(len(rows))]
    return weights


def cell(s0, s1, weights, num_nodes, C, reduction, reduction_prev, bn, k=1, betas=None):
    """One supernet cell: the concatenation of its intermediate nodes (with partial channels
    ``k`` > 1 and edge-normalisation weights ``betas`` as PC-DARTS)."""
    states = preprocess(s0, s1, C, reduction_prev, bn)
    parts = {}  # node -> its first C/k channels, shared by the edges that leave it
    for j in range(2, num_nodes - 1):
        hs = []
        for e, (i, node) in enumerate(edges(num_nodes)):
            if node != j:
                continue
            stride = 2 if reduction and i < 2 else 1
            with nn.parameter_scope('edge{}_{}'.format(i, j)):
                if k == 1:
                    h = mixed_op(states[i], weights[e], C, stride, bn)
                else:
                    if i not in parts:
                        parts[i] = partial_input(states[i], k)
                    h = partial_mixed_op(states[i], parts[i], weights[e], C, stride, bn, k)
            hs.append(h if betas is None else scale(h, betas[e]))
        states.append(NodeOutput(functools.reduce(F.add2, hs)))  # a chain of add2 beats add_n on the CPU
    return concat_nodes(states[2:])


def supernet(x, C, num_cells, num_nodes, num_classes=10, partial_channels=1, edge_normalization=False,
             imagenet=False):
    """Logits of the search network on ``x``, with the alphas of ``alphas(num_nodes)`` (and the
    betas of ``alphas(num_nodes, BETA_NAMES, 1)`` with edge normalisation); with ``imagenet``, the
    ImageNet stem at 3C channels (PC-DARTS's search on ImageNet)."""
    bn = functools.partial(batch_norm, affine=False, test=False)
    weights = [op_weights(a) for a in alphas(num_nodes)]
    betas = ([edge_weights(b, num_nodes) for b in alphas(num_nodes, BETA_NAMES, 1)] if edge_normalization
             else [None, None])

    def make_cell(s0, s1, C_cell, reduction, reduction_prev):
        return cell(s0, s1, weights[reduction], num_nodes, C_cell, reduction, reduction_prev, bn,
                    partial_channels, betas[reduction])

    return backbone(x, C, num_cells, make_cell, num_classes=num_classes, imagenet=imagenet,
                    stem_channels=STEM_MULTIPLIER * C)
