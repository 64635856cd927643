"""DARTS bilevel architecture search on CIFAR-10; writes the derived cells as an arch JSON.

    python darts_search.py --context cudnn --device-id 0 --monitor-path search.monitor \\
        --model-arch-name arch.json [--second-order True]
"""
import itertools
import os
import sys

import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S

import genotype
from args import SEARCH, UserError, parse, run
from data_iterator import download_url, first, load_cifar10, make_iterator, search_halves
from model_eval import count_parameters
from model_search import ALPHA_NAMES, derive, split_parameters, supernet
from operations import scale
from training import (GradClipper, Job, cosine_lr, device_context, initial_state, norm_graph, set_momentum_lr,
                      sharing, write_json)

CURVES = (('error', ('Training error', 'Validation error')), ('loss', ('Training loss', 'Validation loss')),
          ('learning rate', ('Learning rate',)))
MOMENTUM = 0.9
FD_RADIUS = 0.01  # eps = FD_RADIUS / ||grad_w' L_val(w', a)||, as in the paper's code


def build(args):
    """The supernet's loss and error on one input pair, fed alternately with both data halves,
    and the graph's own Variables of the weights and of the alphas."""
    x, y = nn.Variable((args.batch_size, 3, 32, 32)), nn.Variable((args.batch_size, 1))
    logits = supernet(x, args.output_filter, args.num_cells, args.num_nodes)
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
                leaves['alphas' if v.name in ALPHA_NAMES else 'weights'].append(v)
    output.visit(visit)
    return leaves


def forward_backward(graph, batch, solvers):
    """Loss and error of ``batch``, with fresh gradients of the parameters of ``solvers`` (a dict
    with 'weights', 'alphas' or both) and no work spent on the gradients of the others."""
    graph['x'].d, graph['y'].d = batch
    for group, leaves in graph['leaves'].items():
        for v in leaves:
            v.need_grad = group in solvers
    try:
        nn.forward_all([graph['loss'], graph['err']], clear_no_need_grad=True)
        for solver in solvers.values():
            solver.zero_grad()
        graph['loss'].backward(clear_buffer=True)
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
        self.param = sharing({k: p.data for k, p in weights.items()})
        grad = sharing({k: p.grad for k, p in weights.items()})
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
        self.norm = norm_graph(self.direction.values())
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


def alpha_dict(alphas):
    """The raw alphas as JSON lists, rows in edge order 0->2, 1->2, 0->3, ..."""
    return {name.split('/')[-1]: a.d.tolist() for name, a in alphas.items()}


def derived(alphas, num_nodes):
    """The arch JSON of the current alphas."""
    by_name = {name.split('/')[-1]: a.d for name, a in alphas.items()}
    return derive(by_name['alpha_normal'], by_name['alpha_reduction'], num_nodes)


def setup(args):
    """Build the supernet once; returns its weights, alphas, solvers and ``step(train_batch,
    valid_batch)``: the alpha step on the validation batch, then the weight step on the training
    batch. benchmarks/bench.py times this same step."""
    graph = build(args)
    weights, alphas = split_parameters(nn.get_parameters(grad_only=True))
    solvers = {'weights': S.Momentum(args.model_lr, MOMENTUM),
               'alphas': S.Adam(args.arch_lr, beta1=0.5, beta2=0.999)}
    solvers['weights'].set_parameters(weights)
    solvers['alphas'].set_parameters(alphas)
    with nn.context_scope(device_context(args.context, args.device_id, 'float')):
        clipper = GradClipper(weights, args.grad_clip_value_model)
        unroller = Unroller(weights, solvers['weights'], args.weight_decay_model) if args.second_order else None

    def step(train_batch, valid_batch):
        if args.second_order:
            xi = solvers['weights'].learning_rate() if args.eta is None else args.eta
            valid = unrolled_alpha_grads(graph, unroller, alphas, solvers, xi, train_batch, valid_batch)
        else:
            valid = forward_backward(graph, valid_batch, {'alphas': solvers['alphas']})
        solvers['alphas'].weight_decay(args.weight_decay_archs)
        solvers['alphas'].update()
        train = forward_backward(graph, train_batch, {'weights': solvers['weights']})
        clipper(solvers['weights'])
        solvers['weights'].weight_decay(args.weight_decay_model)
        solvers['weights'].update()
        return {'Training loss': train[0], 'Training error': train[1],
                'Validation loss': valid[0], 'Validation error': valid[1]}

    return weights, alphas, solvers, step


def check_output_path(path, resume):
    """The arch JSON goes to a writable place and overwrites nothing (unless resuming)."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.exists(path) and not resume:
        raise UserError('{} already exists: choose another --model-arch-name or move it away'.format(path))
    if not os.access(folder if os.path.isdir(folder) else os.path.dirname(folder), os.W_OK):
        raise UserError('cannot write --model-arch-name {}: its folder is not writable'.format(path))


def main(argv=None):
    args = parse(SEARCH, argv)
    check_output_path(args.model_arch_name, args.resume)
    ctx = device_context(args.context, args.device_id, args.type_config)
    config = dict(num_cells=args.num_cells, channels=args.output_filter, num_nodes=args.num_nodes,
                  batch_size=args.batch_size, seed=args.seed, second_order=args.second_order,
                  train_images=args.train_images)
    state = initial_state(args.monitor_path, args.model_save_path, config, args.resume)
    train_x, train_y, _, _ = load_cifar10(args.dataset_path, url=download_url())
    (wx, wy), (ax, ay) = search_halves(*first(train_x, train_y, args.train_images))
    if len(wy) < args.batch_size:
        raise UserError('--batch-size {} is larger than the {} images of each half of the training set'.format(
            args.batch_size, len(wy)))
    nn.set_default_context(ctx)
    nn.seed(args.seed)
    weights, alphas, solvers, step = setup(args)
    print('supernet: {} weights, {} alphas; {} order'.format(
        count_parameters(weights), count_parameters(alphas), 'second' if args.second_order else 'first'))
    job = Job(state, args.monitor_path, args.model_save_path, args.epoch, len(wy) // args.batch_size,
              args.model_save_interval, solvers, CURVES)
    job.restore()
    start = job.state['iteration'] * args.batch_size
    data = [make_iterator(x, y, args.batch_size, args.seed, stream=s, start=start)
            for s, (x, y) in enumerate(((wx, wy), (ax, ay)))]

    def begin_epoch(epoch):
        lr = cosine_lr(epoch, args.epoch, args.model_lr, args.min_model_lr)
        set_momentum_lr(solvers['weights'], lr)
        return {'Learning rate': lr}

    def logged_step(it):
        return step(data[0].next(), data[1].next())

    def end_epoch(epoch, interrupts):
        genotype.save(derived(alphas, args.num_nodes),
                      os.path.join(args.monitor_path, 'arch_epoch_{}.json'.format(epoch + 1)))
        write_json(alpha_dict(alphas), os.path.join(args.monitor_path, 'alphas_epoch_{}.json'.format(epoch + 1)))
        return {}

    try:
        job.run(begin_epoch, logged_step, end_epoch)
    finally:
        for d in data:
            d.close()
    arch = derived(alphas, args.num_nodes)
    write_json(alpha_dict(alphas), os.path.join(args.monitor_path, 'alphas.json'))
    genotype.save(arch, args.model_arch_name)
    genotype.plot(arch, args.monitor_path)
    print(genotype.describe(arch))
    print('architecture written to {}; retrain it with:\n  python darts_train.py --context {} '
          '--model-arch-name {} --num-nodes {} --monitor-path result.monitor'.format(
              args.model_arch_name, args.context, args.model_arch_name, args.num_nodes))
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
