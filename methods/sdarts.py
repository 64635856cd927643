"""SDARTS-RS (Chen & Hsieh, "Stabilizing Differentiable Architecture Search via Perturbation-based
Regularization", ICML 2020): DARTS whose weight step sees randomly perturbed mixing weights,

    weight step on L_train(w, softmax(a) + delta),  delta ~ U[-eps_t, eps_t] for every edge and op,
    eps_t = 0.03 + (--sdarts-epsilon - 0.03) * epoch / epochs   (epoch from 0; default 0.3)

(the schedule of the paper's code). Training the weights for a neighbourhood of the alphas
smooths the validation loss around them, which keeps the Hessian's dominant eigenvalue low and
the search from collapsing. The alpha step, first or second order, sees the unperturbed
softmax; so do the Hessian eigenvalue and the derivation, DARTS's. The draws follow from the
seed and the iteration (the same on every rank, and again in a resumed search).
"""
import contextlib

import numpy as np
import nnabla as nn
import nnabla.functions as F

from methods.darts import Darts
from model_search import edge_slices

FIRST_EPSILON = 0.03  # eps_t at the first epoch


class SdartsRs(Darts):
    """DARTS with uniform noise on the mixing weights of every weight step (the module's text)."""

    name, title = 'sdarts-rs', 'SDARTS-RS (Chen & Hsieh, ICML 2020)'
    options = {'sdarts_epsilon': 0.3}

    def __init__(self, **values):
        super().__init__(**values)
        self.noises, self.epsilon = [], FIRST_EPSILON

    def mixing(self, alpha, table):
        """softmax(alpha) + delta, delta a Variable of alpha's shape: zero but in a weight pass."""
        noise = nn.Variable(alpha.shape, need_grad=False)
        noise.data.zero()
        self.noises.append(noise)
        return edge_slices(F.add2(F.softmax(alpha, axis=1), noise), table)

    def schedule(self, epoch, epochs):
        self.epsilon = FIRST_EPSILON + (self.options['sdarts_epsilon'] - FIRST_EPSILON) * epoch / epochs

    def draws(self, iteration):
        """delta of every alpha matrix for the weight step of ``iteration``."""
        rng = np.random.RandomState([self.seed, iteration, 5])
        return [rng.uniform(-self.epsilon, self.epsilon, noise.shape) for noise in self.noises]

    @contextlib.contextmanager
    def weight_pass(self, iteration):
        for noise, delta in zip(self.noises, self.draws(iteration)):
            noise.d = delta
        try:
            yield
        finally:
            for noise in self.noises:
                noise.data.zero()

    def epoch_values(self):
        return {'SDARTS epsilon': self.epsilon}
