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

from spaces.darts_rnn.arch import NODES, OPS

INIT_RANGE = 0.04
ACTIVATIONS = {'tanh': F.tanh, 'relu': F.relu, 'sigmoid': F.sigmoid, 'identity': lambda h: h}


def weight(name, rows, hidden):
    """The (rows x 2 hidden) parameter ``name``, created U(-0.04, 0.04) on first use."""
    return nn.parameter.get_parameter_or_create(name, (rows, 2 * hidden), I.UniformInitializer((-INIT_RANGE,
                                                                                                INIT_RANGE)))


def gated(s, ch, activation, hidden):
    """s + sigmoid(c) * (f(h') - s) of [c, h'] = ``ch``."""
    c = F.sigmoid(F.slice(ch, (0, 0), (ch.shape[0], hidden)))
    h = activation(F.slice(ch, (0, hidden), (ch.shape[0], 2 * hidden)))
    return F.add2(s, F.mul2(c, F.sub2(h, s)))


def masked(v, mask):
    return v if mask is None else F.mul2(v, mask)


def step(x, h, arch, x_mask=None, h_mask=None):
    """h_t of the cell of ``arch`` on the (B x input) ``x`` and the (B x hidden) h_{t-1} ``h``."""
    hidden = h.shape[1]
    xh = F.concatenate(masked(x, x_mask), masked(h, h_mask), axis=1)
    states = [gated(h, F.affine(xh, weight('W0', xh.shape[1], hidden)), F.tanh, hidden)]
    for i, (op, source) in enumerate(arch):
        s = states[source]
        states.append(gated(s, F.affine(masked(s, h_mask), weight('W{}'.format(i + 1), hidden, hidden)),
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
    cell has it. With one-hot ``weights`` and no BN this is the derived cell's step."""
    hidden = h.shape[1]
    xh = F.concatenate(masked(x, x_mask), masked(h, h_mask), axis=1)
    norm = (lambda s: PF.batch_normalization(s, axes=[1], batch_stat=not test, no_scale=True, no_bias=True,
                                             name='bn')) if bn else (lambda s: s)
    states = [norm(gated(h, F.affine(xh, weight('W0', xh.shape[1], hidden)), F.tanh, hidden))]
    row = 0
    for node in range(1, NODES + 1):
        before = F.stack(*states, axis=0)  # (node, B, hidden)
        flat = F.reshape(masked(before, None if h_mask is None else F.reshape(h_mask, (1,) + h_mask.shape)),
                         (node * x.shape[0], hidden))
        ch = F.reshape(F.affine(flat, weight('W{}'.format(node), hidden, hidden)), (node, x.shape[0], 2 * hidden))
        c = F.sigmoid(F.slice(ch, (0, 0, 0), (node, x.shape[0], hidden)))
        h_ = F.slice(ch, (0, 0, hidden), (node, x.shape[0], 2 * hidden))
        terms = []
        for k, op in enumerate(OPS):
            if op == 'none':
                continue
            w = F.reshape(F.slice(weights, (row, k), (row + node, k + 1)), (node, 1, 1))
            unweighted = F.add2(before, F.mul2(c, F.sub2(ACTIVATIONS[op](h_), before)))
            terms.append(F.sum(F.mul2(w, unweighted), axis=0))
        states.append(norm(F.add_n(*terms)))
        row += node
    return F.mul_scalar(F.add_n(*states[1:]), 1.0 / NODES)
