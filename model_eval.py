"""The network that retrains a derived cell: the shared backbone with the arch JSON's cells,
BN with affine, an auxiliary head, and drop path.

Each intermediate node sums its two ops (the arch's [op id, input node] pairs); a reduction
cell's edges out of its two input nodes have stride 2. The auxiliary head reads the output
of cell 2L//3. Drop path scales every op output but the plain identity by a per-sample mask.

Shapes of the head, the drop-path schedule, parameter counts: docs/reference.md.
"""
import functools

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF

from backbone import backbone, preprocess, reduction_cells
from genotype import nodes
from operations import IDENTITY, OPS, NodeOutput, batch_norm, concat_nodes, conv, scale


class DropPath:
    """Per-sample drop path: each op output is scaled by a (B,1,1,1) mask Variable.

    The masks (0 or 1/keep) are drawn in numpy from a generator the trainer seeds per
    iteration, so a resumed run draws exactly the masks of an uninterrupted one. They are
    uploaded as one (B, masks, 1, 1) array per step (one host-to-device copy, not one per op):
    at the first ``refresh`` each op's mask becomes a slice of that array.
    """

    def __init__(self):
        self.masks, self.groups = [], []  # groups: (array Variable, the masks sliced from it)

    def __call__(self, h):
        mask = nn.Variable((h.shape[0], 1, 1, 1))
        mask.d = 1.0  # no drop until the first refresh
        self.masks.append(mask)
        return scale(h, mask)

    def join(self):
        """Make the masks built since the last join slices of one new array Variable."""
        joined = sum(len(masks) for _, masks in self.groups)
        masks = self.masks[joined:]
        if masks:
            batch = masks[0].shape[0]
            array = nn.Variable((batch, len(masks), 1, 1))
            array.d = 1.0
            for k, mask in enumerate(masks):
                mask.rewire_on(F.slice(array, (0, k, 0, 0), (batch, k + 1, 1, 1)))
            self.groups.append((array, masks))

    def refresh(self, rng, prob, rank=0, size=1):
        """Draw new masks: each sample kept with probability 1 - prob, then scaled by 1/keep (mask
        after mask, as draws of ``rng`` for the global batch in the order the ops were built).
        Under mpirun rank ``rank`` of ``size`` takes its rows of the global batch, so that the
        masks of a sample do not depend on the number of processes."""
        self.join()
        keep = 1.0 - prob
        for array, masks in self.groups:
            rows = array.shape[0]
            draws = rng.random_sample((len(masks), rows * size))[:, rank * rows:(rank + 1) * rows] < keep
            array.d = (draws.T / keep).reshape(array.shape)

    def values(self):
        """The current masks as a (masks, B) numpy array, in the order the ops were built."""
        self.join()
        return np.concatenate([array.d.reshape(array.shape[:2]).T for array, _ in self.groups])


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


AUX_POOL, AUX_STRIDES = 5, {False: 3, True: 2}  # the aux head's average pooling (CIFAR, ImageNet)


def smallest_aux_input(imagenet):
    """The smallest side of the maps the aux head takes: its pooling must leave 2x2 for its 2x2 conv."""
    return AUX_POOL + AUX_STRIDES[imagenet]


def auxiliary_head(x, num_classes, bn, imagenet=False):
    """On NodeOutput ``x``: ReLU, 5x5 avg pool of stride 3 (ImageNet: 2), 1x1 conv 128 + BN + ReLU,
    2x2 conv 768 + BN (not on ImageNet, as the paper's code has it) + ReLU, affine."""
    stride = AUX_STRIDES[imagenet]
    h = F.average_pooling(x.relu, (AUX_POOL, AUX_POOL), (stride, stride), including_pad=False)
    h = F.relu(bn(conv(h, 128, 1, name='conv1'), name='bn1'))
    h = conv(h, 768, 2, name='conv2')
    h = F.relu(h if imagenet else bn(h, name='bn2'))
    return PF.affine(h, num_classes)


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
