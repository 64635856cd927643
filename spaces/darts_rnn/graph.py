"""The language model's graphs, each built once per job (network.py's model on a window of BPTT
steps), and what a step feeds them: a window of the token stream, the hidden state carried from
the window before, fresh dropout masks.

The carried hidden states are parameters without gradient (scope 'carried'), so that a checkpoint
holds them and a resumed job continues each stream's state exactly. Under mpirun each rank feeds
its share of the window's columns (parallel.Single.rows), with its rows of the masks drawn for the
whole batch, and the ranks join their carried rows, so every rank holds every column's state. Every window's pass starts
from the state its stream carried into it, and the state after the last pass on a window is
carried on: for the search that is the alpha pass on a validation window (at the unrolled weights
in the second order) and the weight pass on a training window, as in the paper's code.
"""
import collections

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.initializer as I

import corpora
import parallel
from model_search import graph_parameters, split_parameters
from numerics import running_statistics
from spaces.darts_rnn import network
from spaces.darts_rnn.arch import EDGES, OPS

ALPHA = 'alpha_recurrent'  # the short name of the supernet's (36 x 5) alphas
Rates = collections.namedtuple('Rates', 'output hidden x input embedding')
Rates.__doc__ = """The paper's dropout probabilities: of the cell's ``output`` (locked), its ``hidden`` and ``x``
inputs (variational, the cell's own), the embedded ``input`` (locked) and the ``embedding`` matrix's words."""
Sizes = collections.namedtuple('Sizes', 'vocabulary embedding hidden batch bptt')


def carried(name, batch, hidden):
    """The (batch x hidden) state carried between the windows of stream ``name``, zero at first."""
    return nn.parameter.get_parameter_or_create('carried/' + name, (batch, hidden), I.ConstantInitializer(0),
                                                need_grad=False)


def keep_mask(rng, shape, p):
    """A dropout mask: 0 with probability ``p``, else 1 / (1 - p)."""
    return ((rng.random_sample(shape) >= p) / (1.0 - p)).astype(np.float32) if p else np.ones(shape, np.float32)


class Feeder:
    """Feeds a training graph a window (inputs, targets, the state it starts from, the parameter that
    carries its stream's state; all of the global batch's columns) and fresh dropout masks drawn from
    ``rng`` (the job sets it for every step, so that a resumed job draws the same), and carries the
    window's last state on. Under mpirun it feeds this rank's columns."""

    def __init__(self, graph, rates):
        self.graph, self.rates, self.rng = graph, rates, np.random.RandomState(0)
        self.rows = parallel.world().rows(graph['x'].shape[1] * parallel.world().size)

    def __call__(self, window):
        g, masks, rates, rows, ranks = self.graph, self.graph['masks'], self.rates, self.rows, parallel.world().size
        g['x'].d, g['y'].d = window[0][:, rows], window[1][:, rows]
        g['h0'].d = window[2][rows]
        for name, p in zip(masks._fields, (rates.embedding, rates.input, rates.x, rates.hidden, rates.output)):
            v = getattr(masks, name)
            whole = v.shape if name == 'embedding' else (v.shape[0] * ranks,) + v.shape[1:]
            v.d = keep_mask(self.rng, whole, p)[slice(None) if name == 'embedding' else rows]

    def carry(self, window):
        state = window[3].d.copy()
        state[self.rows] = self.graph['last'].d
        window[3].d = parallel.world().joined_rows(state, self.rows)


def inputs(sizes, batch=None, steps=None):
    """The token, target and first-state Variables of a window of ``steps`` (bptt) rows of ``batch``."""
    batch, steps = batch or sizes.batch, steps or sizes.bptt
    return nn.Variable((steps, batch)), nn.Variable((steps, batch)), nn.Variable((batch, sizes.hidden))


def training_graph(step, sizes, rates, tar):
    """The training graph of the cell ``step`` (network.derived or network.mixed) on this rank's
    columns of a batch: 'loss' (the mean cross entropy plus TAR of weight ``tar``), 'err' (the cross
    entropy alone: the log perplexity), its inputs 'x', 'y', 'h0', its 'masks' and 'last' state,
    and 'feed' and 'carry' (Feeder); the parameters as model_search.search_graph has them
    ('weights', 'alphas', 'leaves', 'reduce': the gradients averaged over the ranks)."""
    batch = sizes.batch // parallel.world().size
    x, y, h0 = inputs(sizes, batch)
    masks = network.Masks(nn.Variable((sizes.vocabulary, 1)), nn.Variable((batch, sizes.embedding)),
                          nn.Variable((batch, sizes.embedding)), nn.Variable((batch, sizes.hidden)),
                          nn.Variable((batch, sizes.hidden)))
    logits, last, hs = network.language_model(x, h0, step, sizes.vocabulary, sizes.embedding, masks)
    graph = dict(x=x, y=y, h0=h0, masks=masks, last=last, loss=network.loss(logits, y, hs, tar),
                 err=network.loss(logits, y, hs))
    for v in (graph['loss'], graph['err'], last):
        v.persistent = True
    graph['leaves'] = graph_parameters(graph['loss'])
    graph['weights'], graph['alphas'] = split_parameters(nn.get_parameters(grad_only=True))
    statistics = {k: v for k, v in running_statistics().items() if not k.startswith('carried/')}
    graph['reduce'] = {'weights': parallel.grad_reducer(graph['weights'], statistics),
                       'alphas': parallel.grad_reducer(graph['alphas'])}
    feeder = Feeder(graph, rates)
    graph['feed'], graph['carry'], graph['feeder'] = feeder, feeder.carry, feeder
    return graph


def supernet_weights():
    """The supernet's alphas (scope 'alpha', 1e-3 N(0, 1) as the paper's code starts them) and
    their softmax, the mixing weights of every edge."""
    with nn.parameter_scope('alpha'):
        alpha = nn.parameter.get_parameter_or_create(ALPHA, (len(EDGES), len(OPS)), I.NormalInitializer(1e-3))
    return F.softmax(alpha, axis=1)


class Evaluator:
    """The mean cross entropy over a whole (rows x B) stream, window after window of ``bptt`` rows
    from a zero state, the state carried, without dropout: the paper's evaluate(). One test graph
    per window length (bptt, and the stream's last, shorter window), built on first use."""

    def __init__(self, step_of_test, sizes):
        self.step_of_test, self.sizes, self.graphs = step_of_test, sizes, {}

    def graph(self, steps, batch):
        if (steps, batch) not in self.graphs:
            x, y, h0 = inputs(self.sizes, batch, steps)
            logits, last, hs = network.language_model(x, h0, self.step_of_test(), self.sizes.vocabulary,
                                                      self.sizes.embedding)
            nll = network.loss(logits, y, hs)
            nll.persistent = last.persistent = True
            self.graphs[steps, batch] = dict(x=x, y=y, h0=h0, nll=nll, last=last)
        return self.graphs[steps, batch]

    def __call__(self, stream, interrupts=None):
        """The mean cross entropy per token of ``stream`` (its log perplexity)."""
        total, count, h = 0.0, 0, np.zeros((stream.shape[1], self.sizes.hidden), np.float32)
        for start in range(0, len(stream) - 1, self.sizes.bptt):
            x, y = corpora.window(stream, start, self.sizes.bptt)
            g = self.graph(len(y), stream.shape[1])
            g['x'].d, g['y'].d, g['h0'].d = x, y, h
            nn.forward_all([g['nll'], g['last']], clear_buffer=True)
            total, count, h = total + float(g['nll'].d) * y.size, count + y.size, g['last'].d.copy()
            if interrupts:
                interrupts.check()
        return total / count
