"""What every retraining network shares, and the graphs built on a space's network: drop path,
the auxiliary head, the training graph (losses with the aux head and label smoothing) and the test
graph, and the measures of a network (parameters, multiply-adds).

Drop path scales every op output but the plain identity by a per-sample mask. The auxiliary head
reads the maps of the space's choice (DARTS: the output of cell 2L//3).

Shapes of the head, the drop-path schedule, parameter counts: docs/reference.md.
"""
import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF

import parallel
from device import float_context
from errors import UserError
from operations import conv, scale
from tasks.classification import inputs, test_outputs, training_loss


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


def build(space, arch, net, batch_size, label_smoothing=0.0, auxiliary_weight=0.4):
    """The training graph of ``batch_size`` images (this rank's share of --batch-size) of the network
    of ``arch`` in ``space`` for ``net``: loss with the aux head, drop path and label smoothing,
    main-head loss (no smoothing) and error. With --type-config half the losses and errors are
    computed in float: nnabla-ext-cuda 1.39 has no half softmax cross entropy, and a float
    log-softmax keeps the small probabilities."""
    x, y = inputs(batch_size, net.data)
    drop_path = DropPath()
    logits, aux_logits = space.network(x, arch, net, drop_path=drop_path)
    with nn.context_scope(float_context(nn.get_current_context())):  # the loss in float (see above)
        ce = F.mean(F.softmax_cross_entropy(logits, y))
        loss = ce if not label_smoothing else training_loss(logits, y, label_smoothing)
        if net.auxiliary:
            loss = loss + auxiliary_weight * training_loss(aux_logits, y, label_smoothing)
        err = F.mean(F.top_n_error(logits, y))
    if single_value_batch_norms(loss):
        raise UserError('--batch-size {} leaves one value per channel in a batch normalisation (the aux head '
                        'ends on 1x1 maps): use --batch-size {} or more, or --auxiliary False'.format(
                            batch_size * parallel.world().size, 2 * parallel.world().size))
    for v in (loss, ce, err):
        v.persistent = True  # read after forward: never let buffer clearing reuse them
    return dict(x=x, y=y, loss=loss, ce=ce, err=err, drop_path=drop_path)


def build_test(space, arch, net, batch_size):
    """The test graph (BN statistics, no aux head, no drop path): per-image loss and error (and
    top-5 error where tasks.classification.reports_top5)."""
    x, y = inputs(batch_size, net.data)
    logits, _ = space.network(x, arch, net, test=True)
    with nn.context_scope(float_context(nn.get_current_context())):
        return dict(test_outputs(logits, y, net.data), x=x, y=y, logits=logits)


def single_value_batch_norms(output):
    """The names of the BNs of ``output`` that normalise over one value per channel (their
    variance is 0: such a batch trains nothing and drives the weights to NaN)."""
    found = []

    def visit(f):
        if f.info.type_name == 'BatchNormalization' and f.info.args['batch_stat']:
            x = f.inputs[0]
            if x.size // x.shape[1] < 2:
                found.append(f.name)
    output.visit(visit)
    return found


def function_multiply_adds(f):
    """Multiply-adds of one nnabla function over its whole batch: a convolution's or an affine
    layer's (the usual count of a network's cost; BN, ReLU, pooling and additions count 0)."""
    if f.info.type_name not in ('Convolution', 'DepthwiseConvolution', 'Affine'):
        return 0
    weights = f.inputs[1].shape  # (out, in, k, k), (C, k, k) or (in, out)
    per_output = weights[0] if f.info.type_name == 'Affine' else int(np.prod(weights[1:]))
    return f.outputs[0].size * per_output


def multiply_adds(output):
    """Multiply-adds of the convolutions and affine layers computing ``output``, per image."""
    total = 0

    def visit(f):
        nonlocal total
        total += function_multiply_adds(f)
    output.visit(visit)
    return total // output.shape[0]


def count_parameters(params):
    """Number of trainable scalars in a name -> Variable dict."""
    return int(sum(np.prod(v.shape) for v in params.values()))


def parameter_counts(params):
    """Trainable parameters of the network proper and of its auxiliary head."""
    aux = count_parameters({k: v for k, v in params.items() if k.startswith('aux/')})
    return count_parameters(params) - aux, aux
