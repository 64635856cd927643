"""NAS-Bench-201's networks: the supernet (a mixed op on every edge, one alpha matrix shared by
every cell) and the network of one cell, on the same skeleton:

    stem: 3x3 conv (3 -> C) and BN
    N cells at C; a residual block C -> 2C (operations.residual_block); N cells at 2C;
    a residual block 2C -> 4C; N cells at 4C
    BN, ReLU, global average pooling, affine to the classes

A cell of 4 nodes: node 0 its input, node j the sum over i < j of op_ij(node i), node 3 its
output. In the supernet the BNs of the cells' ops have no affine parameters and use the batch's
statistics, as NAS-Bench-201's search code has them; the stem, the blocks and the last BN are
ordinary. The retraining network has BN with affine everywhere, drop path on every op but the
identity where asked, and an aux head on the output of the second residual block where asked
(neither is in NAS-Bench-201's recipe, whose defaults leave them off).
"""
import functools

import nnabla as nn
import nnabla.functions as F

from model_eval import auxiliary_head
from model_search import Edges, alphas, edge_weights, node_sum, op_weights
from operations import NAS_BENCH_201, NodeOutput, batch_norm, classifier, conv, residual_block
from spaces.nas_bench_201.arch import EDGES, NODES, OPS, parse

ALPHA_NAMES, BETA_NAMES = ('alpha_cell',), ('beta_cell',)
STAGES = 3


def skeleton(x, C, num_cells, make_cell, bn, num_classes, after_block=None):
    """Logits of the network whose cells (NodeOutput -> its output Variable, scope 'cell<i>') are
    ``make_cell(h, C_stage)``; ``after_block(stage, output)`` sees each residual block's output."""
    with nn.parameter_scope('stem'):
        h = NodeOutput(bn(conv(x, C, 3, pad=1)))
    for stage in range(STAGES):
        if stage:
            with nn.parameter_scope('block{}'.format(stage)):
                h = NodeOutput(residual_block(h, C * 2 ** stage, bn))
            if after_block is not None:
                after_block(stage, h)
        for k in range(num_cells):
            with nn.parameter_scope('cell{}'.format(stage * num_cells + k)):
                h = NodeOutput(make_cell(h, C * 2 ** stage))
    with nn.parameter_scope('last'):
        h = F.relu(bn(h.h))
    return classifier(h, num_classes)


def search_cell(h, mixed, C, bn):
    """One supernet cell on NodeOutput ``h``: node 3, every node the sum of the mixed-op edges
    (``mixed``, a model_search.Edges) from every earlier node."""
    states = [h]
    for j in range(1, NODES):
        hs = [mixed(states, e, i, j, 1, C, bn) for e, (i, node) in enumerate(EDGES) if node == j]
        states.append(NodeOutput(node_sum(hs, h.h)))
    return states[-1].h


def supernet(x, C, num_cells, num_classes=10, partial_channels=1, edge_normalization=False, mixing=None):
    """Logits of the supernet on ``x``, with the alphas ALPHA_NAMES (edges x ops), shared by every
    cell, mixing the ops by ``mixing`` (default: softmax, model_search.op_weights), and the betas
    BETA_NAMES with edge normalisation."""
    weights = (mixing or op_weights)(alphas(ALPHA_NAMES, len(EDGES), len(OPS))[0], NAS_BENCH_201)
    betas = edge_weights(alphas(BETA_NAMES, len(EDGES), 1)[0], EDGES) if edge_normalization else None
    cell_bn = functools.partial(batch_norm, affine=False, test=False)

    def make_cell(h, C_stage):
        return search_cell(h, Edges(weights, NAS_BENCH_201, partial_channels, betas), C_stage, cell_bn)

    return skeleton(x, C, num_cells, make_cell, functools.partial(batch_norm, affine=True, test=False), num_classes)


def cell(h, ops, C, bn, drop_path=None):
    """One cell of the ops of EDGES on NodeOutput ``h``: node 3 (zeros where every path is none)."""
    states = [h]
    for j in range(1, NODES):
        hs = []
        for e, (i, node) in enumerate(EDGES):
            if node != j or ops[e] == 'none':
                continue
            k = OPS.index(ops[e])
            with nn.parameter_scope('edge{}_{}'.format(i, j)):
                out = NAS_BENCH_201.functions[k](states[i], C, 1, bn)
            hs.append(out if drop_path is None or k == NAS_BENCH_201.identity else drop_path(out))
        states.append(NodeOutput(functools.reduce(F.add2, hs) if hs else F.mul_scalar(h.h, 0.0)))
    return states[-1].h


def network(x, text, C, num_cells, num_classes=10, auxiliary=False, test=False, drop_path=None):
    """Logits of the network of cell string ``text`` (and of the aux head, None when absent or at test)."""
    ops = parse(text)
    bn = functools.partial(batch_norm, affine=True, test=test)
    aux_logits = []

    def aux_head(stage, output):
        if auxiliary and not test and stage == STAGES - 1:
            with nn.parameter_scope('aux'):
                aux_logits.append(auxiliary_head(output, num_classes, bn))

    logits = skeleton(x, C, num_cells, lambda h, C_stage: cell(h, ops, C_stage, bn, None if test else drop_path),
                      bn, num_classes, aux_head)
    return logits, (aux_logits[0] if aux_logits else None)
