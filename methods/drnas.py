"""DrNAS (Chen, Wang, Cheng, Tang & Hsieh, "DrNAS: Dirichlet Neural Architecture Search", ICLR
2021): every edge's mixing weights are a draw from a Dirichlet distribution whose concentration
the alphas parameterise, so that the search learns a distribution over architectures,

    theta_e ~ Dirichlet(beta_e),  beta_e = ELU(alpha_e) + 1   (over all the edge's ops, zero included)

drawn afresh for every forward pass of a step (the alpha step's and the weight step's). The
gradient reaches the alphas through the pathwise gradient of the draw: theta = z / sum(z) of Gamma
draws z_k ~ Gamma(beta_k, 1), whose dz/dbeta is the implicit reparameterisation (methods/gamma.py,
in numpy, since nnabla has no Gamma sampler with a gradient). In the graph a surrogate has the
draw's value and that gradient,

    z_graph = z + dz/dbeta * (beta - beta'),  beta' the unlinked beta (so the bracket is exactly 0),

each edge's z and dz/dbeta divided by the edge's largest z (theta and its gradient stay the same,
and no edge underflows to all zeros). The paper's regulariser (its code's default: an L2 penalty of
1e-3 on the alphas) is the alphas' Adam weight decay, --weight-decay-archs 1e-3; its KL variant is
not implemented. The alpha gradient is first order (the paper's), at the current weights. The draws
are numpy's RandomState([seed, iteration, pass]), the same on every rank and again in a resumed
search. The derivation reads the Dirichlet mean beta_e / sum(beta_e); the Hessian eigenvalue sees the
graph with the last weight step's draw (docs/reference.md).
"""
import numpy as np
import nnabla as nn
import nnabla.functions as F

from methods import gamma
from methods.darts import Darts
from model_search import ALPHA_PREFIXES, edge_slices

ALPHA_DRAW, WEIGHT_DRAW = 1, 2  # the pass in the draws' seeds


def concentration(alpha):
    """beta = ELU(alpha) + 1 of an alpha array: alpha + 1 above 0, exp(alpha) below."""
    return np.where(alpha > 0, alpha + 1, np.exp(np.minimum(alpha, 0)))


def log_concentration(alpha):
    """log(beta) of an alpha array: log(1 + alpha) above 0, alpha below (exact where beta underflows)."""
    return np.where(alpha > 0, np.log1p(np.maximum(alpha, 0)), alpha)


def scaled_draws(rng, beta):
    """Gamma(beta, 1) draws z of every edge (row) and op, and their dz/dbeta, both divided by the
    edge's largest z (theta = z / sum(z) and its gradient do not change), as float32."""
    log_z = gamma.log_draw(rng, beta)
    z = np.exp(log_z - log_z.max(axis=1, keepdims=True))
    return z.astype(np.float32), (z * gamma.log_rate(beta, log_z)).astype(np.float32)


class Drnas(Darts):
    """Dirichlet mixing weights, drawn for every pass; the first-order alpha gradient of the
    validation loss through the draw (the module's text)."""

    name, title = 'drnas', 'DrNAS (Chen et al., ICLR 2021)'
    refuses = {'second_order': False, 'early_stop': False}

    def __init__(self, **values):
        super().__init__(**values)
        self.draws = []  # [(alpha, z Variable, dz/dbeta Variable)]

    def mixing(self, alpha, table):
        """z_graph / sum(z_graph) per edge (the module's text); uniform until the first draw."""
        beta = F.add_scalar(F.elu(alpha), 1.0)
        z, rate = nn.Variable(alpha.shape), nn.Variable(alpha.shape)
        z.data.fill(1.0)
        rate.data.zero()
        self.draws.append((alpha, z, rate))
        sample = F.add2(z, F.mul2(rate, F.sub2(beta, beta.get_unlinked_variable(need_grad=False))))
        return edge_slices(F.div2(sample, F.sum(sample, axis=1, keepdims=True)), table)

    def mean_weights(self, alpha):
        """The Dirichlet mean beta / sum(beta) of every edge."""
        beta = F.add_scalar(F.elu(alpha), 1.0)
        return F.div2(beta, F.sum(beta, axis=1, keepdims=True))

    def draw(self, iteration, draw):
        """The Dirichlet draws of pass ``draw`` (ALPHA_DRAW, WEIGHT_DRAW) of ``iteration``, at the
        current alphas."""
        rng = np.random.RandomState([self.seed, iteration, draw])
        for alpha, z, rate in self.draws:
            z.d, rate.d = scaled_draws(rng, concentration(alpha.d.astype(np.float64)))

    def alpha_gradient(self, train_batch, valid_batch, iteration=0):
        self.draw(iteration, ALPHA_DRAW)
        return super().alpha_gradient(train_batch, valid_batch, iteration)

    def weight_gradient(self, train_batch, iteration):
        self.draw(iteration, WEIGHT_DRAW)
        return super().weight_gradient(train_batch, iteration)

    def epoch_values(self):
        """The mean over all edges of the total concentration sum_k beta_ek (the larger, the closer
        the draws to their mean)."""
        totals = np.concatenate([concentration(alpha.d.astype(np.float64)).sum(axis=1) for alpha, _, _ in self.draws])
        return {'DrNAS concentration': float(totals.mean())}

    def derive(self, space, arrays, max_skip_connect=None):
        """The space's derivation of the Dirichlet mean beta_e / sum(beta_e): the space reads the
        softmax of log(beta), which is that mean; the betas of edge normalisation as they are."""
        means = {name: log_concentration(np.asarray(a, np.float64)) if name.startswith(ALPHA_PREFIXES[0]) else a
                 for name, a in arrays.items()}
        return space.derive(means, max_skip_connect)
