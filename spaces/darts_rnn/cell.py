"""The recurrent cell of an arch (spaces/darts_rnn/arch.py), and the supernet's cell, as nnabla
graphs, unrolled over time:

    [c0, h0] = [x * m_x, h * m_h] W0,  s0 = h + sigmoid(c0) * (tanh(h0) - h)
    [c, h'] = (s_p * m_h) W_i,          s_i = s_p + sigmoid(c) * (f_i(h') - s_p)
    h_t = mean of s_1 .. s_8

with the variational dropout masks m_x and m_h of the paper's code (one per sequence of a batch,
the same at every step; none at test), W0 of (input + hidden) x 2 hidden and one W_i of hidden x
2 hidden per node, all initialised U(-0.04, 0.04) as there.
"""
import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I
import nnabla.parametric_functions as PF

from numpy_functions import multiply, product, subtract, tanh
from spaces.darts_rnn.arch import NODES, OPS

INIT_RANGE = 0.04
ACTIVATIONS = {'tanh': tanh, 'relu': F.relu, 'sigmoid': F.sigmoid, 'identity': lambda h: h}


def weight(name, rows, hidden):
    """The (rows x 2 hidden) parameter ``name``, created U(-0.04, 0.04) on first use."""
    return nn.parameter.get_parameter_or_create(name, (rows, 2 * hidden), I.UniformInitializer((-INIT_RANGE,
                                                                                                INIT_RANGE)))


def gated(s, ch, activation, hidden):
    """s + sigmoid(c) * (f(h') - s) of [c, h'] = ``ch``."""
    c = F.sigmoid(F.slice(ch, (0, 0), (ch.shape[0], hidden)))
    h = activation(F.slice(ch, (0, hidden), (ch.shape[0], 2 * hidden)))
    return F.add2(s, multiply(c, subtract(h, s)))


def masked(v, mask):
    return v if mask is None else multiply(v, mask)


def step(x, h, arch, x_mask=None, h_mask=None):
    """h_t of the cell of ``arch`` on the (B x input) ``x`` and the (B x hidden) h_{t-1} ``h``."""
    hidden = h.shape[1]
    xh = F.concatenate(masked(x, x_mask), masked(h, h_mask), axis=1)
    states = [gated(h, product(xh, weight('W0', xh.shape[1], hidden)), tanh, hidden)]
    for i, (op, source) in enumerate(arch):
        s = states[source]
        states.append(gated(s, product(masked(s, h_mask), weight('W{}'.format(i + 1), hidden, hidden)),
                            ACTIVATIONS[op], hidden))
    return F.mul_scalar(F.add_n(*states[1:NODES + 1]), 1.0 / NODES)


def unrolled(xs, h, arch, x_mask=None, h_mask=None):
    """The hidden states of every step of the inputs ``xs`` (a list of B x input Variables) from h_0 ``h``."""
    hs = []
    with nn.parameter_scope('cell'):
        for x in xs:
            h = step(x, h, arch, x_mask, h_mask)
            hs.append(h)
    return hs


def search_step(x, h, weights, x_mask=None, h_mask=None, bn=True, test=False):
    """h_t of the supernet cell: every node reads every earlier node through the mix of the four
    activations by ``weights`` (a 36 x 5 Variable, ``none`` in column 0 adding nothing), one matrix
    product per node for all its incoming edges (the paper's code batches them so), and with ``bn``
    a BN without affine parameters on s0 and on every node, one BN for all, as the paper's search
    cell has it (its running statistics at ``test``). With one-hot ``weights`` and no BN this is the
    derived cell's step. Node j's sum over its edges e and ops k of w_ek (s_e + c_e (f_k(h'_e) - s_e))
    is computed as

        s_j = sum_e W_e s_e + sum_e c_e (sum_k w_ek f_k(h'_e) - W_e s_e),  W_e = sum_k w_ek,

    whose weighted sums are matrix products, fewer functions than one elementwise product per edge
    and op (benchmarks/rnn_cell_forms.py). Products, elementwise products and differences are
    numpy_functions', the fast forms on the CPU."""
    batch, hidden = h.shape
    xh = F.concatenate(masked(x, x_mask), masked(h, h_mask), axis=1)
    norm = (lambda s: PF.batch_normalization(s, axes=[1], batch_stat=not test, no_scale=True, no_bias=True,
                                             name='bn')) if bn else (lambda s: s)
    states = [norm(gated(h, product(xh, weight('W0', xh.shape[1], hidden)), tanh, hidden))]
    inputs = [masked(states[0], h_mask)]
    row = 0
    for node in range(1, NODES + 1):
        before = F.stack(*states, axis=0)  # (node, B, hidden): s_e of every edge into the node
        flat = F.reshape(F.stack(*inputs, axis=0), (node * batch, hidden))
        ch = F.reshape(product(flat, weight('W{}'.format(node), hidden, hidden)), (node, batch, 2 * hidden))
        c = F.sigmoid(F.slice(ch, (0, 0, 0), (node, batch, hidden)))
        h_ = F.slice(ch, (0, 0, hidden), (node, batch, 2 * hidden))
        w = F.slice(weights, (row, 1), (row + node, len(OPS)))  # (node, 4): the ops but none
        total = F.sum(w, axis=1, keepdims=True)  # W_e
        mix = F.reshape(F.concatenate(w, F.mul_scalar(total, -1.0), axis=1), (node, 1, len(OPS)))
        candidates = F.stack(*[ACTIVATIONS[op](h_) for op in OPS[1:]] + [before], axis=1)  # (node, 5, B, hidden)
        change = F.batch_matmul(mix, F.reshape(candidates, (node, len(OPS), batch * hidden)))
        kept = product(F.reshape(total, (1, node)), F.reshape(before, (node, batch * hidden)))
        s = F.add2(F.reshape(kept, (batch, hidden)), F.sum(multiply(c, F.reshape(change, (node, batch, hidden))), axis=0))
        states.append(norm(s))
        inputs.append(masked(states[-1], h_mask))
        row += node
    return F.mul_scalar(F.add_n(*states[1:]), 1.0 / NODES)
