"""DARTS's alpha step (Liu et al., ICLR 2019): the alpha gradient of the validation loss, first
order or the paper's second-order approximation (eq. 7-8), on one search graph built once
(model_search.search_graph); ``Darts`` is the method of the --method seam (methods/method.py).

First order: grad_a L_val(w, a). Second order, with xi the current weight learning rate and
buf the PyTorch-style momentum buffer (numerics.py):

    w' = w - xi (mu buf + grad_w L_train(w, a) + wd w)       (mu: the momentum, 0.9)
    grad_a = grad_a L_val(w', a) - xi (grad_a L_train(w+, a) - grad_a L_train(w-, a)) / (2 eps)
    w+- = w +- eps grad_w' L_val(w', a),  eps = 0.01 / ||grad_w' L_val(w', a)|| (global 2-norm)

The weights are written in place (a built graph keeps the arrays it was built on) and restored
exactly; the graph computes only the gradients that a pass needs.

The formula, its passes and the momentum buffer it reads: docs/reference.md.
"""
import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S

from methods.method import Method
from model_search import forward_backward
from numerics import Copier, GradClipper, bound, concatenated, flat_view, zeros_like

FD_RADIUS = 0.01  # eps = FD_RADIUS / ||grad_w' L_val(w', a)||, as in the paper's code


def bmm_scale(s, h):
    """s * h for a (1, 1, 1) factor ``s`` and a (1, 1, n) flat vector ``h``: one batched product,
    an exact multiply like the network's ``scale``."""
    return F.batch_matmul(s, h)


def split_into(flat, arrays):
    """The outputs that write the consecutive pieces of the (1, 1, total) ``flat`` into
    ``arrays`` when forwarded together (one slice per array, its output bound to the array's
    memory and persistent: never cleared as a buffer)."""
    pieces, start = [], 0
    for a in arrays:
        piece = F.slice(flat, (0, 0, start), (1, 1, start + a.size))
        piece.data, piece.persistent = flat_view(a).data, True
        pieces.append(piece)
        start += a.size
    return pieces


class Unroller:
    """The weight arithmetic of the second-order step, built once on the arrays of the weights,
    their gradients and the solver's momentum. The unrolled weights are computed on flat vectors
    of all the weights (as the paper's code does) and written back with one slice per tensor;
    save, restore and the kept direction are solver-kernel copies, the perturbation an SGD
    kernel: about one function per weight tensor and step, where a graph node per tensor and
    operation took about 28."""

    def __init__(self, weights, solver, weight_decay, momentum, nesterov=False):
        self.solver, self.names, self.weights = solver, list(weights), list(weights.values())
        # mu of w' = w - xi (mu buf + ...); buf = v / lr of S.Momentum, -v / lr of S.Nesterov (numerics.py)
        self.momentum_factor = -momentum if nesterov else momentum
        data, grads = [p.data for p in self.weights], [p.grad for p in self.weights]
        saved, direction = [zeros_like(p) for p in self.weights], [zeros_like(p) for p in self.weights]
        self.save_copy, self.restore_copy = Copier(data, saved), Copier(saved, data)
        self.direction_copy = Copier(grads, direction)
        self.xi, self.buffer_scale = nn.Variable((1, 1, 1)), nn.Variable((1, 1, 1))
        self.momentum = [nn.Variable((1, 1, p.size)) for p in self.weights]  # bound to the solver's in save()
        w, g = concatenated(saved), concatenated(grads)
        m = self.momentum[0] if len(self.momentum) == 1 else F.concatenate(*self.momentum, axis=2)
        # w' = w - xi (mu buf + grad + wd w), buf = v / lr (numerics.py): w - xi (grad + wd w + (mu / lr) v) on
        # flat vectors, in the per-tensor operation order; numpy's per tensor: test_unroller_weight_arithmetic_is_numpys
        unrolled = F.sub2(w, bmm_scale(self.xi, F.add2(F.add2(g, F.mul_scalar(w, weight_decay)),
                                                       bmm_scale(self.buffer_scale, m))))
        self.unrolled = split_into(unrolled, data)
        self.norm = F.norm(concatenated(direction))
        self.stepper = S.Sgd(0.0)  # w -= lr * direction on the weights' arrays: the perturbation
        self.stepper.set_parameters({str(i): bound(d, e) for i, (d, e) in enumerate(zip(data, direction))})

    def save(self, xi):
        """Keep the current weights (and the solver's momentum, the unrolled step's xi)."""
        self.save_copy()
        states = self.solver.get_states()
        for m, name in zip(self.momentum, self.names):
            m.data = flat_view(states[name].pstate['m'].data).data
        self.xi.d, self.buffer_scale.d = xi, self.momentum_factor / self.solver.learning_rate()

    def unroll(self):
        """w' = w - xi (mu buf + grad + wd w), the gradient being the one now in the weights' .grad."""
        nn.forward_all(self.unrolled, clear_buffer=True)

    def keep_direction(self):
        """Keep the weights' current gradient as the direction of perturb(); returns its 2-norm."""
        self.direction_copy()
        self.norm.forward(clear_buffer=True)
        return float(self.norm.d)

    def perturb(self, step):
        """w = saved w + step * direction."""
        self.restore_copy()
        self.stepper.set_learning_rate(-step)
        self.stepper.update()

    def restore(self):
        """The saved weights back, exactly."""
        self.restore_copy()


def unrolled_alpha_grads(graph, unroller, alphas, solvers, xi, train_batch, valid_batch, clip=None):
    """Leave in the alphas' .grad the second-order gradient of the paper (eq. 7-8); returns the
    validation loss and error at the unrolled weights. With a numerics.GradClipper ``clip`` the
    training gradient of the unrolled step is clipped first (the paper's recurrent search does so).

    w' = w - xi (mu buf + grad_w L_train(w) + wd w);  grad_a = grad_a L_val(w') -
    xi (grad_a L_train(w+) - grad_a L_train(w-)) / (2 eps), w+- = w +- eps grad_w' L_val(w').
    The weights are written in place and restored exactly at the end.
    """
    unroller.save(xi)
    forward_backward(graph, train_batch, {'weights': solvers['weights']})
    if clip:
        clip(solvers['weights'])
    unroller.unroll()
    valid = forward_backward(graph, valid_batch, solvers)
    dalpha = {k: a.g.copy() for k, a in alphas.items()}
    eps = FD_RADIUS / unroller.keep_direction()
    hessian = []
    for sign in (1, -1):
        unroller.perturb(sign * eps)
        forward_backward(graph, train_batch, {'alphas': solvers['alphas']})
        hessian.append({k: a.g.copy() for k, a in alphas.items()})
    unroller.restore()
    for k, a in alphas.items():
        a.g = dalpha[k] - (xi / (2 * eps)) * (hessian[0][k] - hessian[1][k])
    return valid


class FirstOrder:
    """The alpha gradient at the current weights, grad_a L_val(w, a) (the paper's first order)."""

    def __init__(self, graph, solvers):
        self.graph, self.solvers = graph, solvers

    def __call__(self, train_batch, valid_batch):
        """Leave the gradient in the alphas' .grad; returns the validation loss and error."""
        return forward_backward(self.graph, valid_batch, {'alphas': self.solvers['alphas']})


class SecondOrder(FirstOrder):
    """The paper's second-order approximation (eq. 7-8, unrolled_alpha_grads) with xi = ``eta``, or
    the current weight learning rate when ``eta`` is None (as in the paper); the unrolled step's
    gradient clipped to the global norm ``clip`` where given."""

    def __init__(self, graph, solvers, weight_decay, momentum, eta=None, nesterov=False, clip=None):
        super().__init__(graph, solvers)
        self.unroller = Unroller(graph['weights'], solvers['weights'], weight_decay, momentum, nesterov)
        self.eta, self.clip = eta, clip and GradClipper(graph['weights'], clip)

    def __call__(self, train_batch, valid_batch):
        xi = self.solvers['weights'].learning_rate() if self.eta is None else self.eta
        return unrolled_alpha_grads(self.graph, self.unroller, self.graph['alphas'], self.solvers, xi, train_batch,
                                    valid_batch, self.clip)


class Darts(Method):
    """DARTS: softmax mixing; the alpha gradient of the validation loss, first order or the paper's
    second-order approximation (``second_order``, with ``eta`` and the weights' SGD: ``weight_decay``,
    ``momentum``, ``nesterov``; ``unroll_clip``: the unrolled step's gradient clip, or None)."""

    name, title = 'darts', 'DARTS (Liu et al., ICLR 2019)'

    def __init__(self, second_order=False, eta=None, weight_decay=0.0, momentum=0.9, nesterov=False, unroll_clip=None,
                 **values):
        super().__init__(**values)
        self.second_order, self.eta, self.unroll_clip = second_order, eta, unroll_clip
        self.weight_decay, self.momentum, self.nesterov = weight_decay, momentum, nesterov

    def attach(self, graph, solvers):
        super().attach(graph, solvers)
        self.alpha_grads = (SecondOrder(graph, solvers, self.weight_decay, self.momentum, self.eta, self.nesterov,
                                        self.unroll_clip) if self.second_order else FirstOrder(graph, solvers))

    def alpha_gradient(self, train_batch, valid_batch, iteration=0):
        return self.alpha_grads(train_batch, valid_batch)
