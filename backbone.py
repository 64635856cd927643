"""The skeleton both networks share: stem, cells, global average pooling, classifier.

    stem: 3x3 conv to 3C channels and BN (affine in both networks, as in the paper's code)
    cells 0..L-1: cells L//3 and 2L//3 are reduction cells (stride 2), each doubling C;
        cell k reads the outputs of cells k-2 and k-1 (the stem's output for both at first)
    classifier: global average pooling (a mean over the spatial axes), affine to the classes

The networks differ only in their cells (mixed ops on every edge in the search, the derived
ops in retraining) and their BN (no affine, batch statistics in the search).

The shapes of both networks and their parameter counts: docs/reference.md.
"""
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import numpy as np

from operations import NodeOutput, batch_norm, conv, factorized_reduce, relu_conv_bn

STEM_MULTIPLIER = 3


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


def preprocess(s0, s1, C, reduction_prev, bn):
    """A cell's two input Nodes brought to C channels: node 0 (factorized reduction after a
    reduction cell, else ReLU-conv-BN) and node 1 (ReLU-conv-BN)."""
    with nn.parameter_scope('pre0'):
        s0 = factorized_reduce(s0, C, bn) if reduction_prev else relu_conv_bn(s0, C, bn)
    with nn.parameter_scope('pre1'):
        return [NodeOutput(s0), NodeOutput(relu_conv_bn(s1, C, bn))]


def backbone(x, C, num_cells, make_cell, test=False, num_classes=10, after_cell=None):
    """Logits of the network whose cell i is ``make_cell(s0, s1, C_i, reduction, reduction_prev)``
    (a NodeOutput, built in parameter scope 'cell<i>'); ``after_cell(i, output)`` sees each cell's output."""
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


def global_average_pool(h):
    """(B, C, H, W) -> (B, C): the mean over the spatial axes. F.mean rather than
    F.global_average_pooling, which nnabla-ext-cuda 1.39 does not implement (every call would
    copy the activations to the host and back)."""
    return F.mean(h, axis=(2, 3))


def classifier(h, num_classes):
    """Global average pooling and the affine to the classes ('classifier/affine/W', (C, classes))."""
    with nn.parameter_scope('classifier'):
        return PF.affine(global_average_pool(h), num_classes)


def count_parameters(params):
    """Number of trainable scalars in a name -> Variable dict."""
    return int(sum(np.prod(v.shape) for v in params.values()))
