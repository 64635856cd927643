"""The DARTS space's networks: the skeleton both share, the supernet's cells (a mixed op on every
edge) and the retraining network's cells (the arch's two ops per node, an aux head, drop path).

    stem (CIFAR): 3x3 conv to 3C channels and BN (affine in both networks, as in the paper's code)
    stem (ImageNet, the paper's mobile setting): three 3x3 convs of stride 2 (to C'/2, C', C'),
        the first cell reading the outputs of the second and the third (C' = C in retraining,
        3C in the search, as PC-DARTS searches on ImageNet)
    cells 0..L-1: cells L//3 and 2L//3 are reduction cells (stride 2), each doubling C;
        cell k reads the outputs of cells k-2 and k-1 (the stem's output for both at first)
    classifier: global average pooling (a mean over the spatial axes; at 224 px the paper's 7x7
        average pooling), affine to the classes

In the supernet every edge i->j of a cell is a mixed op (model_search.py; the alphas' rows follow
``arch.edges``, their columns ``operations.OPS``), its BN without learnable affine everywhere in the
cells, with a BN after each pooling op. In the retraining network each intermediate node sums its
two ops; a reduction cell's edges out of its two input nodes have stride 2; the auxiliary head
reads the output of cell 2L//3.

The shapes of both networks and their parameter counts: docs/reference.md.
"""
import functools

import nnabla as nn
import nnabla.functions as F

from model_eval import auxiliary_head
from model_search import Edges, alphas, edge_weights, node_sum, op_weights
from operations import (DARTS, IDENTITY, OPS, NodeOutput, batch_norm, classifier, concat_nodes, conv,
                        factorized_reduce, relu_conv_bn)
from spaces.darts_cnn.arch import ALPHA_NAMES, BETA_NAMES, edges, nodes

STEM_MULTIPLIER = 3


def downsampling(imagenet):
    """How many times smaller the last cells' maps are than the images: the two reduction cells,
    and the ImageNet stem's three stride-2 convolutions."""
    return 2 ** (2 + 3 * imagenet)


def reduction_cells(num_cells):
    """Indices of the reduction cells: L//3 and 2L//3."""
    return (num_cells // 3, 2 * num_cells // 3)


def cell_channels(i, C, num_cells):
    """C of cell ``i``: doubled by each reduction cell up to and including it (L=1 has one)."""
    return C * 2 ** sum(i >= r for r in set(reduction_cells(num_cells)))


def stem(x, C, test=False):
    """NodeOutput of the 3x3 conv to 3C channels and BN."""
    with nn.parameter_scope('stem'):
        return NodeOutput(batch_norm(conv(x, STEM_MULTIPLIER * C, 3, pad=1), affine=True, test=test))


def imagenet_stem(x, C, test=False):
    """(s0, s1), NodeOutputs of the ImageNet stem: 3x3 conv of stride 2 to C/2, BN, ReLU, 3x3 conv of
    stride 2 to C, BN (s0); ReLU, 3x3 conv of stride 2 to C, BN (s1)."""
    with nn.parameter_scope('stem0'):
        h = F.relu(batch_norm(conv(x, C // 2, 3, 2, 1, name='conv1'), affine=True, test=test, name='bn1'))
        s0 = NodeOutput(batch_norm(conv(h, C, 3, 2, 1, name='conv2'), affine=True, test=test, name='bn2'))
    with nn.parameter_scope('stem1'):
        return s0, NodeOutput(batch_norm(conv(s0.relu, C, 3, 2, 1), affine=True, test=test))


def preprocess(s0, s1, C, reduction_prev, bn):
    """A cell's two input Nodes brought to C channels: node 0 (factorized reduction after a
    reduction cell, else ReLU-conv-BN) and node 1 (ReLU-conv-BN)."""
    with nn.parameter_scope('pre0'):
        s0 = factorized_reduce(s0, C, bn) if reduction_prev else relu_conv_bn(s0, C, bn)
    with nn.parameter_scope('pre1'):
        return [NodeOutput(s0), NodeOutput(relu_conv_bn(s1, C, bn))]


def backbone(x, C, num_cells, make_cell, test=False, num_classes=10, after_cell=None, imagenet=False,
             stem_channels=None):
    """Logits of the network whose cell i is ``make_cell(s0, s1, C_i, reduction, reduction_prev)``
    (a NodeOutput, built in parameter scope 'cell<i>'); ``after_cell(i, output)`` sees each cell's output.
    The ImageNet stem (``imagenet``) ends at ``stem_channels``."""
    if imagenet:
        (s0, s1), reduction_prev = imagenet_stem(x, stem_channels, test), True
    else:
        s0 = s1 = stem(x, C, test)
        reduction_prev = False
    for i in range(num_cells):
        reduction = i in reduction_cells(num_cells)
        with nn.parameter_scope('cell{}'.format(i)):
            s0, s1 = s1, make_cell(s0, s1, cell_channels(i, C, num_cells), reduction, reduction_prev)
        if after_cell is not None:
            after_cell(i, s1)
        reduction_prev = reduction
    return classifier(s1.h, num_classes)


def search_cell(s0, s1, mixed, num_nodes, C, reduction, reduction_prev, bn):
    """One supernet cell: the concatenation of its intermediate nodes, each the sum of the mixed-op
    edges (``mixed``, a model_search.Edges) from every earlier node."""
    states = preprocess(s0, s1, C, reduction_prev, bn)
    for j in range(2, num_nodes - 1):
        hs = [mixed(states, e, i, j, 2 if reduction and i < 2 else 1, C, bn)
              for e, (i, node) in enumerate(edges(num_nodes)) if node == j]
        states.append(NodeOutput(node_sum(hs, None)))  # every node keeps an edge of every architecture
    return concat_nodes(states[2:])


def supernet(x, C, num_cells, num_nodes, num_classes=10, partial_channels=1, edge_normalization=False,
             imagenet=False, mixing=None):
    """Logits of the search network on ``x``, with the alphas ALPHA_NAMES (and the betas
    BETA_NAMES with edge normalisation) mixing the ops by ``mixing`` (default: softmax,
    model_search.op_weights); with ``imagenet``, the ImageNet stem at 3C channels (PC-DARTS's search
    on ImageNet)."""
    bn = functools.partial(batch_norm, affine=False, test=False)
    edge_list = edges(num_nodes)
    weights = [(mixing or op_weights)(a, DARTS) for a in alphas(ALPHA_NAMES, len(edge_list), len(OPS))]
    betas = ([edge_weights(b, edge_list) for b in alphas(BETA_NAMES, len(edge_list), 1)] if edge_normalization
             else [None, None])

    def make_cell(s0, s1, C_cell, reduction, reduction_prev):
        mixed = Edges(weights[reduction], DARTS, partial_channels, betas[reduction])
        return search_cell(s0, s1, mixed, num_nodes, C_cell, reduction, reduction_prev, bn)

    return backbone(x, C, num_cells, make_cell, num_classes=num_classes, imagenet=imagenet,
                    stem_channels=STEM_MULTIPLIER * C)


def cell(s0, s1, genotype_cell, C, reduction, reduction_prev, bn, drop_path=None):
    """One cell of a derived genotype on Nodes ``s0``, ``s1``; returns the NodeOutput of its intermediate
    nodes concatenated."""
    states = preprocess(s0, s1, C, reduction_prev, bn)
    for node, pairs in nodes(genotype_cell):
        hs = []
        for k, (op, inp) in enumerate(pairs):
            stride = 2 if reduction and inp < 2 else 1
            with nn.parameter_scope('node{}_{}'.format(node, k)):
                h = OPS[op](states[inp], C, stride, bn)
            if drop_path is not None and not (op == IDENTITY and stride == 1):
                h = drop_path(h)
            hs.append(h)
        states.append(NodeOutput(F.add2(*hs)))
    return concat_nodes(states[2:])


def network(x, arch, C, num_cells, num_classes=10, auxiliary=False, test=False, drop_path=None, imagenet=False):
    """Logits of the retraining network (and of the aux head, None when absent or at test); with
    ``imagenet``, the paper's ImageNet network (its stem and aux head)."""
    bn = functools.partial(batch_norm, affine=True, test=test)
    aux_logits = []

    def make_cell(s0, s1, C_cell, reduction, reduction_prev):
        return cell(s0, s1, arch['arch_reduction' if reduction else 'arch_normal'], C_cell, reduction,
                    reduction_prev, bn, None if test else drop_path)

    def aux_head(i, output):
        if auxiliary and not test and i == reduction_cells(num_cells)[1]:
            with nn.parameter_scope('aux'):
                aux_logits.append(auxiliary_head(output, num_classes, bn, imagenet))

    logits = backbone(x, C, num_cells, make_cell, test, num_classes, aux_head, imagenet, stem_channels=C)
    return logits, (aux_logits[0] if aux_logits else None)
