"""The optimisation arithmetic both jobs share: the learning-rate schedules, PyTorch-style momentum,
global-norm gradient clipping, dynamic loss scaling, in-place copies of arrays by solver kernels and
the running means and switch rule of NT-ASGD.

nnabla's ``S.Momentum`` keeps v = 0.9 v + lr g and subtracts v; the paper's PyTorch SGD keeps
buf = 0.9 buf + g and subtracts lr * buf. The two agree while the lr is constant (v = lr buf);
``set_momentum_lr`` keeps them equal when it changes, and the second-order step reads buf as
v / lr. nnabla's ``S.Nesterov`` keeps v = 0.9 v - lr g and adds -0.9 v_old + 1.9 v, which is
PyTorch's SGD with nesterov=True (buf = 0.9 buf + g, subtract lr (g + 0.9 buf)) with v = -lr buf:
the same rescaling keeps them equal. The paper clips the global 2-norm of all weight gradients
(not each tensor's).

Both conventions side by side, with the recipes of both jobs: docs/reference.md.
"""
import math

import numpy as np

import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S


def cosine_lr(epoch, epochs, lr_max, lr_min):
    """The paper's per-epoch cosine schedule from lr_max (epoch 0) towards lr_min."""
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def epoch_lr(schedule, epoch, epochs, lr, lr_min, gamma):
    """The learning rate of ``epoch`` (from 0): the cosine schedule (CIFAR), lr times gamma every
    epoch (the paper's ImageNet recipe: 0.97), or constant (its recurrent recipe)."""
    if schedule == 'constant':
        return lr
    return cosine_lr(epoch, epochs, lr, lr_min) if schedule == 'cosine' else lr * gamma ** epoch


def momentum_sgd(lr, momentum, nesterov=False):
    """The weights' solver: SGD with PyTorch-style momentum, or Nesterov momentum (both kept so by
    set_momentum_lr)."""
    return (S.Nesterov if nesterov else S.Momentum)(lr, momentum)


def set_momentum_lr(solver, lr):
    """Change the lr of an ``S.Momentum`` (or ``S.Nesterov``) the way the paper's (PyTorch) SGD would:
    rescaling v by lr_new / lr_old keeps v == lr * buf (-lr * buf) exactly."""
    old = solver.learning_rate()
    if old > 0 and lr != old:
        for state in solver.get_states().values():
            state.pstate['m'].data *= lr / old
    solver.set_learning_rate(lr)


def flat_view(array):
    """A (1, 1, size) Variable on the memory of NdArray ``array`` (a view, not a copy): a graph
    reading it reads ``array`` at every forward; a function whose output is bound to it writes
    ``array``."""
    v = nn.Variable(array.shape)
    v.data = array
    return v.reshape((1, 1, array.size), unlink=True)


def concatenated(arrays):
    """A graph of ``arrays`` (NdArrays) copied into one (1, 1, total size) flat vector, in order:
    one function however many arrays there are."""
    views = [flat_view(a) for a in arrays]
    return views[0] if len(views) == 1 else F.concatenate(*views, axis=2)


def running_statistics():
    """The parameters that no solver owns (BN running means and variances), by name: forward
    passes with batch statistics update them, so they are averaged over the ranks with the
    gradients, and saved and written back around the Hessian's passes."""
    trained = nn.get_parameters(grad_only=True)
    return {k: p for k, p in nn.get_parameters(grad_only=False).items() if k not in trained}


class GradClipper:
    """Clips the global gradient norm of a set of parameters: the norm of all gradients
    concatenated into one flat vector (two functions, a graph built once on the gradients' own
    arrays); ``solver.scale_grad`` applies the clip."""

    def __init__(self, params, max_norm):
        self.max_norm = max_norm
        self.norm = F.norm(concatenated([p.grad for p in params.values()]))

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


class WeightUpdate:
    """The weight step of both jobs, on gradients already computed: clip their global norm, add
    the weight decay, update (the paper's order)."""

    def __init__(self, solver, params, max_norm, weight_decay):
        self.solver, self.clip, self.weight_decay = solver, GradClipper(params, max_norm), weight_decay

    def __call__(self):
        self.clip(self.solver)
        self.solver.weight_decay(self.weight_decay)
        self.solver.update()


HALF_MAX = 65504.0  # the largest finite half


class LossScaler:
    """Dynamic loss scaling for --type-config half; with float it scales by 1 and checks nothing.

    The scale starts at 2^8: a network whose scaled gradients overflow half there costs one
    skipped step per halving (3 skips to reach 2^5, where gradients of magnitude up to 2000
    fit). It doubles after every 200 steps without overflow, up to 2^16 (beyond which any
    gradient of magnitude 1 overflows), so a network that takes a large scale has it within
    1,600 steps, and one that does not skips at most one step in 200 once settled.
    """

    def __init__(self, enabled, scale=2.0 ** 8, growth_interval=200, max_scale=2.0 ** 16):
        self.enabled, self.growth_interval, self.max_scale = enabled, growth_interval, max_scale
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
            self.scale = min(self.scale * 2, self.max_scale)
        return True


def bound(data, grad):
    """A Variable whose data and grad are the given arrays (for a solver kernel; need_grad, without
    which a solver's weight_decay passes it by)."""
    v = nn.Variable(data.shape, need_grad=True)
    v.data, v.grad = data, grad
    return v


class Copier:
    """Copies each ``sources[i]`` into ``targets[i]`` with two solver kernels per array: scale the
    targets by 0, then add 1 * source (a weight decay). Exact (x + 0 = x) as long as the targets
    hold finite values before (0 * inf is NaN); no nnabla function and no Python per array, where
    NdArray.copy_from creates and calls a function per array. (zero_grad will not do: a solver
    skips the gradients that zero_grad has marked as zero.)"""

    def __init__(self, sources, targets):
        self.solver = S.Sgd(0.0)
        self.solver.set_parameters({str(i): bound(s, t) for i, (s, t) in enumerate(zip(sources, targets))})

    def __call__(self):
        self.solver.scale_grad(0.0)
        self.solver.weight_decay(1.0)


def zeros_like(p):
    """A new NdArray of zeros of ``p``'s shape (real zeros: a Copier target must hold finite values)."""
    return nn.NdArray.from_numpy_array(np.zeros(p.shape, np.float32))


class Averager:
    """The running means of arrays (NT-ASGD's averaged weights): after the n-th ``update``, each
    average is the mean of the n values its array held at the updates. Two solver kernels per array,
    average = (1 - 1/n) average + (1/n) array, as Copier copies. The averages are new arrays, or the
    data of the Variables ``averages`` (by name; kept as ``parameters``) where given: parameters that
    a checkpoint holds."""

    def __init__(self, params, averages=None):
        self.count, self.parameters = 0, averages
        self.averages = ({name: zeros_like(p) for name, p in params.items()} if averages is None else
                         {name: averages[name].data for name in params})
        self.solver = S.Sgd(0.0)
        self.solver.set_parameters({name: bound(p.data, self.averages[name]) for name, p in params.items()})

    def update(self):
        self.count += 1
        self.solver.scale_grad(1.0 - 1.0 / self.count)
        self.solver.weight_decay(1.0 / self.count)


def asgd_due(losses, loss, nonmono=5):
    """NT-ASGD's switch (Merity et al., ICLR 2018, as the paper's code has it): whether the validation
    ``loss`` of this epoch is worse than the best of the earlier ``losses`` but their last ``nonmono``."""
    return len(losses) > nonmono and loss > min(losses[:-nonmono])
