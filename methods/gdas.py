"""GDAS (Dong & Yang, "Searching for A Robust Neural Architecture in Four GPU Hours", CVPR 2019): one
op per edge, drawn from the alphas by Gumbel-max, and only that op computed,

    h_e = one_hot(argmax_k (log softmax(a_e)_k + g_k)) - stop_gradient(p_e) + p_e,
    p_e = softmax((log softmax(a_e) + g) / tau),  g_k ~ Gumbel(0, 1),
    edge(x) = h_ek* op_k*(x) + sum_{k != k*} h_ek   (k* the drawn op; the h_ek of value 0 added as scalars)

so that the forward pass is the drawn op alone (h_e is exactly one-hot) and the gradient is the
straight-through one of the Gumbel-softmax: through p_e, as the paper's code has it, where the ops
not drawn enter as their (zero) weights added to the edge's output. Both steps draw afresh: the
weight step trains the weights of the drawn network on the training batch, the alpha step the
alphas on the validation batch (first order). tau falls linearly from --tau-max (10) to --tau-min
(0.1) over the search, tau_t = tau_max - (tau_max - tau_min) * epoch / (epochs - 1), the schedule of
the paper's code. Each pass builds the graph of its drawn network (model_search.search_graph's
``with_mixing``), cached by the drawn ops, since a static graph computes every op it holds. The
draws follow from the seed, the iteration and the pass. The supernet graph the search builds
keeps DARTS's softmax for the Hessian eigenvalue and the cost penalty: the probability that GDAS
draws op k is softmax(a_e)_k. The derivation is the space's, from the alphas.
"""
import collections

import numpy as np
import nnabla as nn
import nnabla.functions as F

from methods.method import Method
from model_search import Drawn, forward_backward

WEIGHT_PASS, ALPHA_PASS = 6, 7  # the third seed of each pass's draws
CACHED = 16                     # drawn networks whose graphs are kept


def log_softmax(a):
    """Each row of ``a`` minus its log-sum-exp (numpy)."""
    m = a.max(axis=1, keepdims=True)
    return a - m - np.log(np.exp(a - m).sum(axis=1, keepdims=True))


def drawn_rows(h, drawn):
    """The mixing weights of a drawn network from the (edges x ops) weights ``h``: per edge the drawn
    op ``drawn[e]`` weighed by its h, the other ops not computed and their h added as scalars (their
    values are 0; their gradients are the straight-through estimator's)."""
    rows = []
    for e, k in enumerate(drawn):
        weights = [None] * h.shape[1]
        weights[k] = F.slice(h, (e, k), (e + 1, k + 1))
        rows.append(Drawn(weights, [F.slice(h, (e, j), (e + 1, j + 1)) for j in range(h.shape[1]) if j != k]))
    return rows


class DrawnGraph:
    """The search graph of one drawn network: its drawn op per edge of every alpha matrix fixed, its
    Gumbel noise and temperature inputs set for each pass."""

    def __init__(self, graph, drawn):
        self.drawn, self.inputs = drawn, {}
        self.tau = nn.Variable((1, 1))
        self.graph = graph['with_mixing'](self.mixing)

    def noise(self, alpha):
        """The Variables of the Gumbel noise and the one-hot draw of ``alpha`` (set by ``feed``)."""
        return nn.Variable(alpha.shape), nn.Variable(alpha.shape)

    def mixing(self, alpha, table):
        """The weights h of the module's text for the drawn ops of ``alpha``."""
        gumbel, one_hot = self.inputs[alpha.name] = self.noise(alpha)
        p = F.softmax(F.div2(F.add2(F.log_softmax(alpha, axis=1), gumbel), self.tau), axis=1)
        h = F.add2(F.sub2(p, p.get_unlinked_variable(need_grad=False)), one_hot)  # exactly one_hot in value
        return drawn_rows(h, self.drawn[alpha.name])

    def feed(self, gumbels, tau):
        """Set the noise of every alpha matrix and the temperature."""
        self.tau.d = tau
        for name, (gumbel, one_hot) in self.inputs.items():
            gumbel.d = gumbels[name]
            one_hot.data.zero()
            one_hot.d[np.arange(len(self.drawn[name])), self.drawn[name]] = 1.0
        return self.graph


class Gdas(Method):
    """GDAS: the forward pass of the drawn ops alone, the Gumbel-softmax's straight-through gradient
    (the module's text)."""

    name, title = 'gdas', 'GDAS (Dong & Yang, CVPR 2019)'
    options = {'tau_max': 10.0, 'tau_min': 0.1}
    refuses = {'second_order': False, 'partial_channels': 1, 'edge_normalization': False}

    def __init__(self, **values):
        super().__init__(**values)
        self.tau, self.graphs = self.options['tau_max'], collections.OrderedDict()

    def attach(self, graph, solvers):
        super().attach(graph, solvers)
        self.alphas = {name.split('/')[-1]: a for name, a in graph['alphas'].items()}

    def schedule(self, epoch, epochs):
        tau_max, tau_min = self.options['tau_max'], self.options['tau_min']
        self.tau = tau_max - (tau_max - tau_min) * epoch / max(epochs - 1, 1)

    def draw(self, iteration, which):
        """(Gumbel noise, drawn op per edge) of every alpha matrix for pass ``which`` of ``iteration``."""
        rng = np.random.RandomState([self.seed, iteration, which])
        gumbels = {name: rng.gumbel(size=a.shape) for name, a in sorted(self.alphas.items())}
        drawn = {name: tuple((log_softmax(self.alphas[name].d.astype(np.float64)) + g).argmax(axis=1))
                 for name, g in gumbels.items()}
        return gumbels, drawn

    def drawn_graph(self, iteration, which):
        """The search graph of the network drawn for pass ``which`` of ``iteration``, fed its noise."""
        gumbels, drawn = self.draw(iteration, which)
        key = tuple(sorted(drawn.items()))
        if key in self.graphs:
            self.graphs.move_to_end(key)
        else:
            self.graphs[key] = DrawnGraph(self.graph, drawn)
            if len(self.graphs) > CACHED:
                self.graphs.popitem(last=False)
        return self.graphs[key].feed(gumbels, self.tau)

    def weight_gradient(self, train_batch, iteration):
        return forward_backward(self.drawn_graph(iteration, WEIGHT_PASS), train_batch,
                                {'weights': self.solvers['weights']})

    def alpha_gradient(self, train_batch, valid_batch, iteration=0):
        return forward_backward(self.drawn_graph(iteration, ALPHA_PASS), valid_batch,
                                {'alphas': self.solvers['alphas']})

    def epoch_values(self):
        return {'GDAS temperature': self.tau}
