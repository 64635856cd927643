"""Image classification, the task of the convolutional spaces: what a network is fed, its losses
and errors, the evaluation over a test set, and the lines that report it.

The supernet and the retraining network of any convolutional space take (B, 3, S, S) images and
(B, 1) integer labels and give (B, classes) logits; the rest of the jobs sees only the names
here.
"""
import collections

import nnabla as nn
import nnabla.functions as F

import parallel

# what a network is fed: square images of ``size`` pixels, ``classes`` classes, the ImageNet stem or not
Data = collections.namedtuple('Data', 'size classes imagenet')
CIFAR10 = Data(32, 10, False)
TOP5 = 'Test error top-5'  # the series of the top-5 error, logged where reports_top5


def inputs(batch_size, data):
    """The image and label Variables of a graph of ``batch_size`` samples of ``data``."""
    return nn.Variable((batch_size, 3, data.size, data.size)), nn.Variable((batch_size, 1))


def mean_loss_and_error(logits, y):
    """The batch's mean cross entropy and top-1 error."""
    return F.mean(F.softmax_cross_entropy(logits, y)), F.mean(F.top_n_error(logits, y))


def training_loss(logits, y, smoothing):
    """The mean cross entropy of ``logits`` with label smoothing ``smoothing`` (the paper's ImageNet
    recipe: 0.1): targets (1 - s) one-hot + s / K, so -(1 - s) log p_y - s mean_k log p_k."""
    ce = F.softmax_cross_entropy(logits, y)
    if not smoothing:
        return F.mean(ce)
    uniform = -F.mean(F.log_softmax(logits, axis=1), axis=1, keepdims=True)
    return F.mean((1 - smoothing) * ce + smoothing * uniform)


def reports_top5(data):
    """Whether the top-5 error of a network fed ``data`` is reported beside the top-1 error: for more
    than 10 classes, or more than 5 on the ImageNet network, as ImageNet results report it."""
    return data.classes > 10 or data.imagenet and data.classes > 5


def test_outputs(logits, y, data):
    """{'loss', 'err'(, 'err5')}: the per-image loss and errors of a test graph (persistent: read
    after every forward)."""
    test = dict(loss=F.softmax_cross_entropy(logits, y), err=F.top_n_error(logits, y))
    if reports_top5(data):
        test['err5'] = F.top_n_error(logits, y, n=5)
    for v in test.values():
        v.persistent = True
    return test


def evaluate(test, batches, count, interrupts):
    """{'Test loss', 'Test error'(, TOP5)}: the means over the ``count`` test images of ``batches``
    (this rank's rows of every global test batch and how many are real, eval_batches). Under mpirun
    the sums of all ranks are added up."""
    names = ['Test loss', 'Test error'] + ([TOP5] if 'err5' in test else [])
    outputs = [test['loss'], test['err']] + ([test['err5']] if 'err5' in test else [])
    sums = [0.0] * len(outputs)
    for x, y, valid in batches:
        interrupts.check()
        test['x'].d, test['y'].d = x, y
        nn.forward_all(outputs, clear_buffer=True)
        sums = [total + float(v.d[:valid].sum()) for total, v in zip(sums, outputs)]
    return {name: total / count for name, total in zip(names, parallel.world().sum_floats(sums))}


def error_lines(values):
    """'test error: X.XX%' (and 'test error top-5: Y.YY%'), the last lines of a run."""
    return 'test error: {:.2f}%{}'.format(100 * values['Test error'], '\ntest error top-5: {:.2f}%'.format(
        100 * values[TOP5]) if TOP5 in values else '')
