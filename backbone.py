"""The skeleton both networks share: stem, cells, global average pooling, classifier.

    stem (CIFAR): 3x3 conv to 3C channels and BN (affine in both networks, as in the paper's code)
    stem (ImageNet, the paper's mobile setting): three 3x3 convs of stride 2 (to C'/2, C', C'),
        the first cell reading the outputs of the second and the third (C' = C in retraining,
        3C in the search, as PC-DARTS searches on ImageNet)
    cells 0..L-1: cells L//3 and 2L//3 are reduction cells (stride 2), each doubling C;
        cell k reads the outputs of cells k-2 and k-1 (the stem's output for both at first)
    classifier: global average pooling (a mean over the spatial axes; at 224 px the paper's 7x7
        average pooling), affine to the classes

The networks differ only in their cells (mixed ops on every edge in the search, the derived
ops in retraining) and their BN (no affine, batch statistics in the search).

The shapes of both networks and their parameter counts: docs/reference.md.
"""
import collections

import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import numpy as np

from operations import NodeOutput, batch_norm, conv, factorized_reduce, relu_conv_bn

STEM_MULTIPLIER = 3
# what a network is fed: square images of ``size`` pixels, ``classes`` classes, the ImageNet stem or not
Data = collections.namedtuple('Data', 'size classes imagenet')
CIFAR10 = Data(32, 10, False)


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


def global_average_pool(h):
    """(B, C, H, W) -> (B, C): the mean over the spatial axes. F.mean rather than
    F.global_average_pooling, which nnabla-ext-cuda 1.39 does not implement (every call would
    copy the activations to the host and back)."""
    return F.mean(h, axis=(2, 3))


def classifier(h, num_classes):
    """Global average pooling and the affine to the classes ('classifier/affine/W', (C, classes))."""
    with nn.parameter_scope('classifier'):
        return PF.affine(global_average_pool(h), num_classes)


def multiply_adds(output):
    """Multiply-adds of the convolutions and affine layers computing ``output``, per image (the
    usual count of a network's cost; BN, ReLU, pooling and additions are not counted)."""
    total = 0

    def visit(f):
        nonlocal total
        if f.info.type_name in ('Convolution', 'DepthwiseConvolution', 'Affine'):
            weights = f.inputs[1].shape  # (out, in, k, k), (C, k, k) or (in, out)
            per_output = weights[0] if f.info.type_name == 'Affine' else int(np.prod(weights[1:]))
            total += f.outputs[0].size * per_output
    output.visit(visit)
    return total // output.shape[0]


def count_parameters(params):
    """Number of trainable scalars in a name -> Variable dict."""
    return int(sum(np.prod(v.shape) for v in params.values()))
