"""The optimisation arithmetic both jobs share: the cosine schedule, PyTorch-style momentum,
global-norm gradient clipping and dynamic loss scaling.

nnabla's ``S.Momentum`` keeps v = 0.9 v + lr g and subtracts v; the paper's PyTorch SGD keeps
buf = 0.9 buf + g and subtracts lr * buf. The two agree while the lr is constant (v = lr buf);
``set_momentum_lr`` keeps them equal when it changes, and the second-order step reads buf as
v / lr. The paper clips the global 2-norm of all weight gradients (not each tensor's).

Both conventions side by side, with the recipes of both jobs: docs/reference.md.
"""
import math

import nnabla as nn
import nnabla.functions as F

MOMENTUM = 0.9


def cosine_lr(epoch, epochs, lr_max, lr_min):
    """The paper's per-epoch cosine schedule from lr_max (epoch 0) towards lr_min."""
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def set_momentum_lr(solver, lr):
    """Change the lr of an ``S.Momentum`` the way the paper's (PyTorch) SGD would: rescaling v by
    lr_new / lr_old keeps v == lr * buf exactly."""
    old = solver.learning_rate()
    if old > 0 and lr != old:
        for state in solver.get_states().values():
            state.pstate['m'].data *= lr / old
    solver.set_learning_rate(lr)


def variables_on(arrays):
    """name -> a Variable whose data is ``arrays[name]`` itself, not a copy: a graph built on these
    reads (and may write) those arrays at every forward."""
    out = {}
    for name, array in arrays.items():
        out[name] = nn.Variable(array.shape)
        out[name].data = array
    return out


def global_norm(variables):
    """A graph of the 2-norm of ``variables`` taken together (its forward gives the current value)."""
    return F.add_n(*[F.sum(v ** 2) for v in variables]) ** 0.5


class GradClipper:
    """Clips the global gradient norm of a set of parameters with a graph built once on the
    gradients' own arrays; ``solver.scale_grad`` applies the clip."""

    def __init__(self, params, max_norm):
        self.max_norm = max_norm
        self.norm = global_norm(variables_on({k: p.grad for k, p in params.items()}).values())

    def global_norm(self):
        """The 2-norm of all gradients together."""
        self.norm.forward(clear_buffer=True)
        return float(self.norm.d)

    def __call__(self, solver):
        """Scale the gradients so that their global norm is at most max_norm (as PyTorch does)."""
        norm = self.global_norm()
        coef = self.max_norm / (norm + 1e-6)
        if coef < 1:
            solver.scale_grad(coef)
        return norm


class LossScaler:
    """Dynamic loss scaling for --type-config half; with float it scales by 1 and checks nothing."""

    def __init__(self, enabled, scale=2.0 ** 12, growth_interval=1000):
        self.enabled, self.growth_interval = enabled, growth_interval
        self.scale, self.good_steps = (scale if enabled else 1.0), 0

    def backward(self, loss):
        loss.backward(self.scale, clear_buffer=True)

    def unscale(self, solver):
        """Undo the scale on the gradients; False (skip the update) if they overflowed."""
        if not self.enabled:
            return True
        if solver.check_inf_or_nan_grad():
            self.scale, self.good_steps = self.scale / 2, 0
            return False
        solver.scale_grad(1.0 / self.scale)
        self.good_steps += 1
        if self.good_steps % self.growth_interval == 0:
            self.scale *= 2
        return True
