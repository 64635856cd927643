"""The network that retrains a derived cell (REFERENCE.md, "Networks", retrain column).

Stem (3x3 conv to 3C, BN), ``num_cells`` cells with reduction cells at L//3 and 2L//3
(each doubling C), global average pooling and an affine layer to the classes; an auxiliary
head on the output of cell 2L//3; drop path on every op output but the plain identity.
"""
import functools

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF

from genotype import nodes
from operations import IDENTITY, OPS, Node, batch_norm, concat_nodes, conv, factorized_reduce, relu_conv_bn, scale

STEM_MULTIPLIER = 3


class DropPath:
    """Per-sample drop path: each op output is scaled by a (B,1,1,1) input Variable.

    The masks (0 or 1/keep) are drawn in numpy from a generator the trainer seeds per
    iteration, so a resumed run draws exactly the masks of an uninterrupted one.
    """

    def __init__(self):
        self.masks = []

    def __call__(self, h):
        mask = nn.Variable((h.shape[0], 1, 1, 1))
        mask.d = 1.0
        self.masks.append(mask)
        return scale(h, mask)

    def refresh(self, rng, prob):
        """Draw new masks: each sample kept with probability 1 - prob, then scaled by 1/keep."""
        keep = 1.0 - prob
        for mask in self.masks:
            mask.d = (rng.random_sample(mask.shape) < keep) / keep


def reduction_cells(num_cells):
    """Indices of the reduction cells: L//3 and 2L//3."""
    return (num_cells // 3, 2 * num_cells // 3)


def cell_channels(i, C, num_cells):
    """C of cell ``i``: doubled by each reduction cell up to and including it (L=1 has one)."""
    return C * 2 ** sum(i >= r for r in set(reduction_cells(num_cells)))


def stem(x, C, test=False):
    """Node of the 3x3 conv to 3C channels and BN (with affine in both networks, as in the paper's code)."""
    with nn.parameter_scope('stem'):
        return Node(batch_norm(conv(x, STEM_MULTIPLIER * C, 3, pad=1), affine=True, test=test))


def preprocess(s0, s1, C, reduction_prev, bn):
    """A cell's two input Nodes brought to C channels: node 0 (factorized reduction after a
    reduction cell, else ReLU-conv-BN) and node 1 (ReLU-conv-BN)."""
    with nn.parameter_scope('pre0'):
        s0 = factorized_reduce(s0, C, bn) if reduction_prev else relu_conv_bn(s0, C, bn)
    with nn.parameter_scope('pre1'):
        return [Node(s0), Node(relu_conv_bn(s1, C, bn))]


def cell(s0, s1, genotype_cell, C, reduction, reduction_prev, bn, drop_path=None):
    """One cell of a derived genotype on Nodes ``s0``, ``s1``; returns the Node of its intermediate
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
        states.append(Node(F.add2(*hs)))
    return concat_nodes(states[2:])


def auxiliary_head(x, num_classes, bn):
    """On Node ``x``: ReLU, 5x5 avg pool stride 3, 1x1 conv 128 + BN + ReLU, 2x2 conv 768 + BN +
    ReLU, affine."""
    h = F.average_pooling(x.relu, (5, 5), (3, 3), including_pad=False)
    h = F.relu(bn(conv(h, 128, 1, name='conv1'), name='bn1'))
    h = F.relu(bn(conv(h, 768, 2, name='conv2'), name='bn2'))
    return PF.affine(h, num_classes)


def network(x, arch, C, num_cells, num_classes=10, auxiliary=False, test=False, drop_path=None):
    """Logits of the retraining network (and of the aux head, None when absent or at test)."""
    bn = functools.partial(batch_norm, affine=True, test=test)
    s0 = s1 = stem(x, C, test)
    reduction_prev, aux_logits = False, None
    for i in range(num_cells):
        reduction = i in reduction_cells(num_cells)
        C_cell = cell_channels(i, C, num_cells)
        genotype_cell = arch['arch_reduction' if reduction else 'arch_normal']
        with nn.parameter_scope('cell{}'.format(i)):
            s0, s1 = s1, cell(s0, s1, genotype_cell, C_cell, reduction, reduction_prev, bn,
                              None if test else drop_path)
        reduction_prev = reduction
        if auxiliary and not test and i == reduction_cells(num_cells)[1]:
            with nn.parameter_scope('aux'):
                aux_logits = auxiliary_head(s1, num_classes, bn)
    with nn.parameter_scope('classifier'):
        logits = PF.affine(F.global_average_pooling(s1.h), num_classes)
    return logits, aux_logits


def count_parameters(params):
    """Number of trainable scalars in a name -> Variable dict."""
    return int(sum(np.prod(v.shape) for v in params.values()))
