"""Random search with weight sharing (Li & Talwalkar, "Random Search and Reproducibility for Neural
Architecture Search", UAI 2019): the baseline every one-shot method has to beat.

Every weight step trains the shared weights of one architecture drawn uniformly at random from the
space, and computes only its ops (the graph of the drawn network, model_search.search_graph's
``with_mixing``). The alphas play no part: there is no alpha step. A random architecture is the
space's own derivation of independent N(0, 1) alphas, which draws each NAS-Bench-201 edge's op
uniformly among the five (``none`` included) and, in the DARTS space, each node's two inputs as a
uniform pair of the earlier nodes and each one's op uniformly among the seven that are not zero,
the distribution of the paper's code. At every epoch's end --rsws-candidates random architectures,
the same ones every epoch, are ranked by their error (then loss) on --rsws-batches fixed
validation batches with the shared weights (batch statistics in BN, as in training), and the best
is the epoch's architecture. The draws follow from the seed and the iteration.
"""
import numpy as np
import nnabla as nn

import parallel
from methods.method import Method
from model_search import ALONE, forward_backward

WEIGHT_PASS, CANDIDATES = 8, 9  # the last seed of the training draws and of the candidates'


def random_arch(space, shapes, rng):
    """An architecture of ``space``, whose alphas have ``shapes`` ({short name: shape}), drawn uniformly
    (the module's text)."""
    return space.derive({name: rng.randn(*shape) for name, shape in sorted(shapes.items())})


class Rsws(Method):
    """Random search with weight sharing (the module's text)."""

    name, title = 'rsws', 'random search with weight sharing (Li & Talwalkar, UAI 2019)'
    options = {'rsws_candidates': 100, 'rsws_batches': 1}
    refuses = {'second_order': False, 'partial_channels': 1, 'edge_normalization': False, 'cost_weight': 0.0,
               'early_stop': False, 'arch_warmup_epochs': 0, 'max_skip_connect': None}
    updates_alphas = False

    def attach(self, graph, solvers):
        super().attach(graph, solvers)
        self.shapes = {name.split('/')[-1]: a.shape for name, a in graph['alphas'].items()}
        self.batches, self.trained, self.best = [], None, {}

    @property
    def ranking_batches(self):
        return int(self.options['rsws_batches'])

    def rank_on(self, batches):
        self.batches = batches

    def arch_graph(self, arch):
        """The search graph of the network of ``arch``, its ops computed unweighted."""
        kept = self.graph['space'].arch_ops(arch)

        def mixing(alpha, table):
            rows = [[None] * alpha.shape[1] for _ in range(alpha.shape[0])]
            for e, k in kept[alpha.name]:
                rows[e][k] = ALONE
            return rows
        return self.graph['with_mixing'](mixing)

    def weight_gradient(self, train_batch, iteration):
        self.trained = iteration
        arch = random_arch(self.graph['space'], self.shapes, np.random.RandomState([self.seed, iteration, WEIGHT_PASS]))
        return forward_backward(self.arch_graph(arch), train_batch, {'weights': self.solvers['weights']})

    def score(self, arch):
        """(mean error, mean loss) of ``arch`` on the ranking batches with the shared weights."""
        graph = self.arch_graph(arch)
        values = []
        for batch in self.batches:
            graph['x'].d, graph['y'].d = batch
            nn.forward_all([graph['loss'], graph['err']], clear_buffer=True)
            values.append(parallel.world().mean_values({'err': float(graph['err'].d), 'loss': float(graph['loss'].d)}))
        return np.mean([v['err'] for v in values]), np.mean([v['loss'] for v in values])

    def derive(self, space, arrays, max_skip_connect=None):
        """The best of the candidates on the ranking batches; ranked once per state of the weights (the
        last epoch's ranking is the search's result)."""
        if self.trained is None or self.trained not in self.best:
            rng = np.random.RandomState([self.seed, CANDIDATES])
            candidates = [random_arch(space, self.shapes, rng) for _ in range(int(self.options['rsws_candidates']))]
            self.best = {self.trained: min(candidates, key=self.score)}
        return self.best[self.trained]
