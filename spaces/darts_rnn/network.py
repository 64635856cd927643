"""The language model around the recurrent cell (the paper's RNNModel): an embedding, the cell
unrolled over the window, a decoder tied to the embedding, and the paper's dropouts given as
masks (drawn by the caller, so that a resumed run draws the same ones):

    e_t = (E * m_e)[w_t] * m_i,  h_t = cell(e_t, h_{t-1}; m_x, m_h),  logits_t = (h_t * m_o) E^T + b

m_e drops whole words of the embedding matrix E (embedding dropout), m_i and m_o one mask per
sequence for every step (locked dropout of the inputs and the outputs), m_x and m_h the cell's own;
every mask is 0 or 1 / (1 - p). The training loss adds TAR, beta * mean((h_t - h_{t-1})^2) over the
window's raw hidden states (AR, the paper's 0, is left out).
"""
import collections

import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I

from numpy_functions import multiply, product, softmax_cross_entropy, subtract
from spaces.darts_rnn import cell

EMBEDDING_RANGE = 0.1  # E ~ U(-0.1, 0.1), the paper's code's init_weights; the decoder bias starts at 0

Masks = collections.namedtuple('Masks', 'embedding inputs x hidden outputs')
Masks.__doc__ = """The dropout masks of a training window (Variables): embedding (V x 1), inputs and outputs
(B x embedding and B x hidden), x and hidden (the cell's: B x embedding, B x hidden)."""


def embedding(vocabulary, size):
    """The (V x size) embedding matrix, the decoder's weight too."""
    return nn.parameter.get_parameter_or_create('embedding', (vocabulary, size),
                                                I.UniformInitializer((-EMBEDDING_RANGE, EMBEDDING_RANGE)))


def derived(arch):
    """The cell step of ``arch``, ``step(x, h, x_mask, h_mask)`` (cell.step)."""
    return lambda x, h, x_mask, h_mask: cell.step(x, h, arch, x_mask, h_mask)


def mixed(weights, test=False):
    """The supernet cell's step on the (36 x 5) mixing ``weights`` (cell.search_step; BN on the running
    statistics at ``test``)."""
    return lambda x, h, x_mask, h_mask: cell.search_step(x, h, weights, x_mask, h_mask, test=test)


def language_model(tokens, h0, step, vocabulary, size, masks=None):
    """(logits of every step, (T x B) x V; the last hidden state; the raw hidden states) of the
    (T x B) int Variable ``tokens`` from the (B x size) ``h0``: the model of the module's text around
    the cell ``step`` (derived, mixed), with ``masks`` (Masks) in training, none at test."""
    E = embedding(vocabulary, size)
    steps, batch = tokens.shape
    words = F.gather(E, tokens, axis=0)  # (T, B, size): one gather a window (nnabla's Embed has no GPU kernel)
    if masks is not None:  # each word's row of E times its mask: the mask gathered too, as (T, B, 1)
        words = multiply(words, F.gather(masks.embedding, tokens, axis=0))
    hs, h = [], h0
    with nn.parameter_scope('cell'):
        for t in range(steps):
            e = F.reshape(F.slice(words, (t, 0, 0), (t + 1, batch, size)), (batch, size))
            e = e if masks is None else multiply(e, masks.inputs)
            h = step(e, h, *(None, None) if masks is None else (masks.x, masks.hidden))
            hs.append(h)
    out = F.stack(*hs, axis=0) if masks is None else F.stack(*[multiply(v, masks.outputs) for v in hs], axis=0)
    bias = nn.parameter.get_parameter_or_create('decoder_bias', (vocabulary,), I.ConstantInitializer(0))
    logits = product(F.reshape(out, (steps * batch, size)), E, bias, transpose_b=True)  # the bias in the product
    return logits, h, hs


def loss(logits, targets, hs, tar=0.0):
    """Mean cross entropy of the (T x B) int ``targets``, plus TAR of weight ``tar`` over ``hs``."""
    nll = F.mean(softmax_cross_entropy(logits, F.reshape(targets, (targets.size, 1))))
    if not tar or len(hs) < 2:
        return nll
    steps = F.stack(*hs, axis=0)
    change = subtract(F.slice(steps, start=(1, 0, 0)), F.slice(steps, stop=(len(hs) - 1,) + hs[0].shape))
    return F.add2(nll, F.mul_scalar(F.mean(F.pow_scalar(change, 2.0)), tar))
