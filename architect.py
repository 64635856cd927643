"""The bilevel step of DARTS: the alpha gradient of the validation loss, first order or the
paper's second-order approximation (eq. 7-8), on one supernet graph built once.

First order: grad_a L_val(w, a). Second order, with xi the current weight learning rate and
buf the PyTorch-style momentum buffer (numerics.py):

    w' = w - xi (0.9 buf + grad_w L_train(w, a) + wd w)
    grad_a = grad_a L_val(w', a) - xi (grad_a L_train(w+, a) - grad_a L_train(w-, a)) / (2 eps)
    w+- = w +- eps grad_w' L_val(w', a),  eps = 0.01 / ||grad_w' L_val(w', a)|| (global 2-norm)

The weights are written in place (a built graph keeps the arrays it was built on) and restored
exactly; the graph computes only the gradients that a pass needs.

The formula, its passes and the momentum buffer it reads: docs/reference.md.
"""
import itertools

import nnabla as nn
import nnabla.functions as F

from genotype import ALPHA_NAMES, BETA_NAMES
from model_search import supernet
from numerics import MOMENTUM, global_norm, variables_on
from operations import scale

FD_RADIUS = 0.01  # eps = FD_RADIUS / ||grad_w' L_val(w', a)||, as in the paper's code


def search_graph(batch_size, C, num_cells, num_nodes, partial_channels=1, edge_normalization=False):
    """The supernet's loss and error on one input pair, fed alternately with both data halves,
    and the graph's own Variables of the weights and of the alphas (betas included)."""
    x, y = nn.Variable((batch_size, 3, 32, 32)), nn.Variable((batch_size, 1))
    logits = supernet(x, C, num_cells, num_nodes, partial_channels=partial_channels,
                      edge_normalization=edge_normalization)
    graph = dict(x=x, y=y, loss=F.mean(F.softmax_cross_entropy(logits, y)), err=F.mean(F.top_n_error(logits, y)))
    graph['loss'].persistent = graph['err'].persistent = True
    graph['leaves'] = graph_parameters(graph['loss'])
    return graph


def graph_parameters(output):
    """{'weights': [...], 'alphas': [...]}: the Variables through which ``output`` reads the
    parameters. nnabla builds graphs on unlinked copies of the parameters, so the need_grad of
    these copies, not of nn.get_parameters()'s Variables, decides which gradients a backward
    computes."""
    leaves = {'weights': [], 'alphas': []}

    def visit(f):
        for v in f.inputs:
            if v.parent is None and v.need_grad:
                leaves['alphas' if v.name in ALPHA_NAMES + BETA_NAMES else 'weights'].append(v)
    output.visit(visit)
    return leaves


def forward_backward(graph, batch, solvers):
    """Loss and error of ``batch``, with fresh gradients of the parameters of ``solvers`` (a dict
    with 'weights', 'alphas' or both) and no work spent on the gradients of the others. The
    gradients are then reduced by ``graph['reduce'][group]`` when set (under mpirun: so the
    second-order step's unrolled weights, direction, its norm and hypergradient agree on all ranks)."""
    graph['x'].d, graph['y'].d = batch
    for group, leaves in graph['leaves'].items():
        for v in leaves:
            v.need_grad = group in solvers
    try:
        nn.forward_all([graph['loss'], graph['err']], clear_no_need_grad=True)
        for solver in solvers.values():
            solver.zero_grad()
        graph['loss'].backward(clear_buffer=True)
        for group in solvers:  # under mpirun: averaged over the ranks (set by darts_search.setup)
            reduce = graph.get('reduce', {}).get(group)
            if reduce:
                reduce()
    finally:
        for v in itertools.chain(*graph['leaves'].values()):
            v.need_grad = True
    return float(graph['loss'].d), float(graph['err'].d)


def write_weights(assignment):
    """Run one of an Unroller's graphs, which write the parameters in place."""
    assignment.forward(clear_no_need_grad=False, clear_buffer=False)


def assign(targets, values):
    """A graph that writes each ``values[k]`` into the array of ``targets[k]`` (a Variable)."""
    for k, v in values.items():
        v.data = targets[k].data
    return F.sink(*values.values())


class Unroller:
    """The weight arithmetic of the second-order step as static graphs, built once on Variables
    that share the arrays of the weights, their gradients and the solver's momentum: a graph call
    per operation, where per-parameter Python arithmetic took about a second a step."""

    def __init__(self, weights, solver, weight_decay):
        self.solver = solver
        self.param = variables_on({k: p.data for k, p in weights.items()})
        grad = variables_on({k: p.grad for k, p in weights.items()})
        self.momentum = {k: nn.Variable(p.shape) for k, p in weights.items()}  # bound to the solver's in save()
        self.saved = {k: nn.Variable(p.shape) for k, p in weights.items()}
        self.direction = {k: nn.Variable(p.shape) for k, p in weights.items()}
        self.xi, self.buffer_scale, self.step = (nn.Variable((1, 1)) for _ in range(3))
        self.save_graph = assign(self.saved, {k: F.identity(v) for k, v in self.param.items()})
        self.unroll_graph = assign(self.param, {  # w - xi (grad + wd w + 0.9 m / lr)
            k: F.sub2(w, scale(F.add2(F.add2(grad[k], F.mul_scalar(w, weight_decay)),
                                      scale(F.identity(self.momentum[k]), self.buffer_scale)), self.xi))
            for k, w in self.saved.items()})  # identity: a reshape would keep the array it was built with
        self.direction_graph = assign(self.direction, {k: F.identity(g) for k, g in grad.items()})
        self.norm = global_norm(self.direction.values())
        self.perturb_graph = assign(self.param, {k: F.add2(w, scale(self.direction[k], self.step))
                                                 for k, w in self.saved.items()})
        self.restore_graph = assign(self.param, {k: F.identity(w) for k, w in self.saved.items()})

    def save(self, xi):
        """Keep the current weights (and the solver's momentum, the unrolled step's xi)."""
        for k, state in self.solver.get_states().items():
            self.momentum[k].data = state.pstate['m'].data
        self.xi.d, self.buffer_scale.d = xi, MOMENTUM / self.solver.learning_rate()
        self.save_graph.forward(clear_no_need_grad=False, clear_buffer=False)

    def unroll(self):
        """w' = w - xi (0.9 buf + grad + wd w), the gradient being the one now in the weights' .grad."""
        write_weights(self.unroll_graph)

    def keep_direction(self):
        """Keep the weights' current gradient as the direction of perturb(); returns its 2-norm."""
        self.direction_graph.forward(clear_no_need_grad=False, clear_buffer=False)
        self.norm.forward(clear_buffer=True)
        return float(self.norm.d)

    def perturb(self, step):
        """w = saved w + step * direction."""
        self.step.d = step
        write_weights(self.perturb_graph)

    def restore(self):
        """The saved weights back, exactly."""
        write_weights(self.restore_graph)


def unrolled_alpha_grads(graph, unroller, alphas, solvers, xi, train_batch, valid_batch):
    """Leave in the alphas' .grad the second-order gradient of the paper (eq. 7-8); returns the
    validation loss and error at the unrolled weights.

    w' = w - xi (0.9 buf + grad_w L_train(w) + wd w);  grad_a = grad_a L_val(w') -
    xi (grad_a L_train(w+) - grad_a L_train(w-)) / (2 eps), w+- = w +- eps grad_w' L_val(w').
    The weights are written in place and restored exactly at the end.
    """
    unroller.save(xi)
    forward_backward(graph, train_batch, {'weights': solvers['weights']})
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
