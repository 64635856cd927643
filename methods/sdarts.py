"""SDARTS (Chen & Hsieh, "Stabilizing Differentiable Architecture Search via Perturbation-based
Regularization", ICML 2020): DARTS whose weight step sees perturbed mixing weights,

    weight step on L_train(w, clip(softmax(a) + delta)),  |delta| <= eps_t for every edge and op,
    eps_t = 0.03 + (--sdarts-epsilon - 0.03) * epoch / epochs   (epoch from 0; default 0.3)

(the schedule of the paper's code), where clip clamps each edge's weights to [0, 1] and divides
them by their sum (the edge's largest weight set to 1 if they all clamp to 0), as the paper's
code does after every perturbation. SDARTS-RS draws delta from U[-eps_t, eps_t]; SDARTS-ADV
finds it by the paper's PGD: from a random start, 7 steps of size 2 eps_t / 7 along the sign of
the training loss's gradient, each projected back to |delta| <= eps_t and clipped, and no
perturbation if the attack ended below the clean loss. Training the weights for a neighbourhood of
the alphas smooths the validation loss around them, which keeps the Hessian's dominant eigenvalue
low and the search from collapsing. The alpha step (first or second order), the Hessian eigenvalue
and the derivation see the unperturbed softmax: DARTS's. The draws follow from the seed and the
iteration (the same on every rank, and again in a resumed search).
"""
import numpy as np
import nnabla as nn
import nnabla.functions as F

import parallel
from methods.darts import Darts
from model_search import edge_slices, forward_backward
from spaces.space import softmax_weights

FIRST_EPSILON = 0.03  # eps_t at the first epoch
PGD_STEPS = 7         # SDARTS-ADV's attack steps, the paper's


def clip_rows(w):
    """Each row of ``w`` clamped to [0, 1] and divided by its sum; a row that clamps to all zeros
    gets 1 at its largest entry (the paper code's clip of the perturbed weights)."""
    top = w.argmax(axis=1)
    w = np.clip(w, 0.0, 1.0)
    empty = w.sum(axis=1) == 0
    w[empty, top[empty]] = 1.0
    return w / w.sum(axis=1, keepdims=True)


class SdartsRs(Darts):
    """DARTS with random perturbations of the mixing weights in every weight step (the module's text)."""

    name, title = 'sdarts-rs', 'SDARTS-RS (Chen & Hsieh, ICML 2020)'
    options = {'sdarts_epsilon': 0.3}

    def __init__(self, **values):
        super().__init__(**values)
        self.perturbed, self.epsilon = [], FIRST_EPSILON  # [(alpha, delta Variable)]

    def mixing(self, alpha, table):
        """softmax(alpha) + delta, delta a Variable of alpha's shape: zero but in a weight step."""
        delta = nn.Variable(alpha.shape, need_grad=False)
        delta.data.zero()
        self.perturbed.append((alpha, delta))
        return edge_slices(F.add2(F.softmax(alpha, axis=1), delta), table)

    def schedule(self, epoch, epochs):
        self.epsilon = FIRST_EPSILON + (self.options['sdarts_epsilon'] - FIRST_EPSILON) * epoch / epochs

    def clean(self):
        """softmax of each perturbed alpha matrix (numpy's)."""
        return [softmax_weights(alpha.d) for alpha, _ in self.perturbed]

    def random_start(self, iteration):
        """clip(softmax + U[-eps_t, eps_t]) of every alpha matrix, the draws of ``iteration``."""
        rng = np.random.RandomState([self.seed, iteration, 5])
        return [clip_rows(c + rng.uniform(-self.epsilon, self.epsilon, c.shape)) for c in self.clean()]

    def perturbation(self, train_batch, iteration):
        """The perturbed mixing weights of the weight step of ``iteration``."""
        return self.random_start(iteration)

    def set_weights(self, weights):
        """Make the mixing weights ``weights`` (one array per alpha matrix; None: the clean softmax)."""
        for (alpha, delta), w, c in zip(self.perturbed, weights or [None] * len(self.perturbed), self.clean()):
            if w is None:
                delta.data.zero()
            else:
                delta.d = w - c

    def weight_gradient(self, train_batch, iteration):
        self.set_weights(self.perturbation(train_batch, iteration))
        try:
            return super().weight_gradient(train_batch, iteration)
        finally:
            self.set_weights(None)

    def epoch_values(self):
        return {'SDARTS epsilon': self.epsilon}


class SdartsAdv(SdartsRs):
    """SDARTS with the PGD perturbation that maximises the training loss (the module's text)."""

    name, title = 'sdarts-adv', 'SDARTS-ADV (Chen & Hsieh, ICML 2020)'
    options = {'sdarts_epsilon': 0.3}

    def attach(self, graph, solvers):
        super().attach(graph, solvers)
        self.reduce = parallel.grad_reducer({str(i): delta for i, (_, delta) in enumerate(self.perturbed)})

    def loss(self, batch):
        """The training loss of ``batch`` at the current mixing weights, over all ranks."""
        self.graph['x'].d, self.graph['y'].d = batch
        self.graph['loss'].forward(clear_buffer=True)
        return parallel.world().mean_values({'loss': float(self.graph['loss'].d)})['loss']

    def ascent(self, batch):
        """sign of the gradient of the training loss in the mixing weights (over all ranks)."""
        for _, delta in self.perturbed:
            delta.need_grad = True
            delta.grad.zero()
        try:
            forward_backward(self.graph, batch, {})
            if self.reduce:
                self.reduce()
            return [np.sign(delta.g) for _, delta in self.perturbed]
        finally:
            for _, delta in self.perturbed:
                delta.need_grad = False

    def perturbation(self, train_batch, iteration):
        clean, size = self.clean(), 2 * self.epsilon / PGD_STEPS
        self.set_weights(None)
        before = self.loss(train_batch)
        weights = self.random_start(iteration)
        for _ in range(PGD_STEPS):
            self.set_weights(weights)
            weights = [clip_rows(c + np.clip(w + size * s - c, -self.epsilon, self.epsilon))
                       for w, s, c in zip(weights, self.ascent(train_batch), clean)]
        self.set_weights(weights)
        return weights if self.loss(train_batch) >= before else None
