"""DARTS bilevel architecture search in the space of --search-space (DARTS's cells by default,
NAS-Bench-201's) on the dataset of --dataset (CIFAR-10 by default, CIFAR-100, SVHN, ImageNet, image
folders); writes the derived cells as an arch JSON.

    python darts_search.py --context cudnn --device-id 0 --monitor-path search.monitor \\
        --model-arch-name arch.json [--second-order True]
"""
import contextlib
import json
import os
import shlex
import sys

import nnabla as nn
import nnabla.solvers as S

import board
import checkpoint
import datasets
import early_stop
import genotype
import hessian
import methods
import parallel
import recurrent
import spaces
from args import IMPLIED_BY_ABSENCE, SEARCH, loop_plan, parse, resume_config, space_of
from data_iterator import fixed_batches, network_input, recipe, training_batches, worker_pool
from device import device_context
from errors import UserError, run
from files import check_output, write_atomic, write_json
from genotype import alpha_dict, named_arrays, write_epoch
from loop import TrainingLoop
from methods.cost import CostPenalty
from model_eval import count_parameters
from model_search import search_graph
from numerics import WeightUpdate, momentum_sgd
from plots import draw_cells
from spaces.space import Net
from tasks.classification import CIFAR10

EIGENVALUE, ITERATIONS = 'Hessian eigenvalue', 'Hessian-vector products'
CURVES = (('error', ('Training error', 'Validation error')), ('loss', ('Training loss', 'Validation loss')),
          ('learning rate', ('Learning rate',)), ('dominant eigenvalue of the alpha Hessian', (EIGENVALUE,)))


def setup(args, space, data=CIFAR10):
    """Build the supernet of ``space`` once, fed ``data`` (a tasks.classification.Data); returns its
    solvers, ``step(train_batch, valid_batch, update_arch=True, epoch=0, iteration=0)``, the graph
    (model_search.search_graph: the weights, the alphas with the betas, for the Hessian eigenvalue),
    the method of --method (methods/), whose mixing weights the supernet is built on, and the cost
    penalty of --cost-weight (methods.cost.CostPenalty, or None). The step sets the method's
    schedules for ``epoch``, then is the alpha step on the validation batch (the method's
    gradient and the penalty's; skipped in a warm-up), then the weight step on the training batch
    (the method's weight gradient of ``iteration``). benchmarks/bench.py times this same step. Under
    mpirun the batches are this rank's rows of the global batches, and every gradient a pass
    computes is averaged over the ranks as soon as it is computed (parallel.py)."""
    world = parallel.world()
    method = method_of(args)
    net = Net(args.output_filter, args.num_cells, data, args.partial_channels, args.edge_normalization,
              mixing=method.mixing)
    graph = search_graph(space, net, args.batch_size // world.size)
    solvers = {'weights': momentum_sgd(args.model_lr, args.momentum, args.nesterov),
               'alphas': S.Adam(args.arch_lr, beta1=0.5, beta2=0.999)}
    for group, solver in solvers.items():
        solver.set_parameters(graph[group])
    update_weights = WeightUpdate(solvers['weights'], graph['weights'], args.grad_clip_value_model,
                                  args.weight_decay_model)
    method.attach(graph, solvers)
    cost = (CostPenalty(graph, space, args.num_cells, args.cost_weight, method.mean_weights) if args.cost_weight
            else None)

    def step(train_batch, valid_batch, update_arch=True, epoch=0, iteration=0):
        values = {}
        method.schedule(epoch, args.epoch)
        if update_arch and method.updates_alphas:
            valid = method.alpha_gradient(train_batch, valid_batch, iteration)
            if cost:
                cost.add_gradient()
            solvers['alphas'].weight_decay(args.weight_decay_archs)
            solvers['alphas'].update()
            values = {'Validation loss': valid[0], 'Validation error': valid[1]}
        trained = method.weight_gradient(train_batch, iteration)
        update_weights()
        return world.mean_values(dict({'Training loss': trained[0], 'Training error': trained[1]}, **values))

    return solvers, step, graph, method, cost


def method_of(args):
    """The search method of --method with the flags it reads."""
    own = {name: getattr(args, name) for name in methods.METHODS[args.method].options}
    return methods.get(args.method, seed=args.seed, second_order=args.second_order, eta=args.eta,
                       weight_decay=args.weight_decay_model, momentum=args.momentum, nesterov=args.nesterov, **own)


class EpochEnd:
    """What the search does after each epoch (``end_epoch`` of loop.TrainingLoop): the derived arch's
    files and parameter-free counts; the Hessian eigenvalue when due (eigenvalue_due), on the fixed
    ``probe`` batches; DARTS-ES's decision, which ends the ``loop``. Its record, the eigenvalues and
    the decision, is ``extra``, the loop's checkpointed extra state (TrainingLoop.restore)."""

    def __init__(self, args, space, graph, solvers, probe, loop, extra, method, cost=None):
        self.args, self.space, self.graph, self.solvers, self.probe = args, space, graph, solvers, probe
        self.method, self.cost = method, cost
        self.loop, self.extra = loop, extra
        self.extra.setdefault('eigenvalues', [])  # [epoch from 0, eigenvalue] of every evaluation
        if self.extra.get('early_stop'):  # a search that had stopped: resuming only writes its results again
            loop.stop()

    def __call__(self, epoch, interrupts):
        args, alphas = self.args, self.graph['alphas']
        arch = self.method.derive(self.space, named_arrays(alphas), args.max_skip_connect)
        if parallel.world().is_main:
            write_epoch(arch, alphas, self.space, args.monitor_path, epoch, self.loop.board)
        values = dict(self.space.epoch_values(arch), **self.method.epoch_values())
        if self.cost:
            values.update(self.cost.epoch_values(arch, self.space))
        if eigenvalue_due(epoch, args.hessian_every, args.epoch):
            value, iterations = hessian.dominant_eigenvalue(self.graph, alphas, self.solvers['alphas'], self.probe)
            self.extra['eigenvalues'].append([epoch, value])
            decision = early_stop.decide(self.extra['eigenvalues'], args.hessian_every)
            if args.early_stop and epoch < args.epoch - 1 and decision:
                self.extra['early_stop'] = {'epoch': decision[0],
                                            'reason': stop_reason(decision, epoch, args.hessian_every)}
                self.loop.stop()
            values.update({EIGENVALUE: value, ITERATIONS: iterations})
        return values


def eigenvalue_due(epoch, every, epochs):
    """Whether the Hessian eigenvalue is evaluated after ``epoch`` (from 0) of ``epochs``: every
    ``every`` epochs (--hessian-every, 0: never) from the first, and after the last (RobustDARTS's
    schedule)."""
    return every > 0 and (epoch % every == 0 or epoch == epochs - 1)


def stop_reason(decision, epoch, every):
    """The one line that says why and where DARTS-ES stopped (epochs counted from 1)."""
    earlier, ratio = decision
    return ('early stop (DARTS-ES) after epoch {}: the local average of the Hessian eigenvalue at epoch {} is '
            '{:.3g} times the one at epoch {} (more than {}); the architecture of epoch {} is kept'.format(
                epoch + 1, earlier + every * early_stop.DELTA + 1, ratio, earlier + 1, early_stop.FACTOR,
                earlier + 1))


def finish(args, space, last_arch, alphas, extra):
    """The arch and alphas the search returns: the last epoch's (``last_arch``), or with DARTS-ES the
    kept epoch's (whose files the search wrote at that epoch's end), and the stop reason in the
    monitor folder."""
    stopped = extra.get('early_stop')
    if not stopped:
        return last_arch, alpha_dict(alphas)
    kept = stopped['epoch'] + 1
    arch = genotype.load(genotype.epoch_file(args.monitor_path, 'arch', kept), space)
    with open(genotype.epoch_file(args.monitor_path, 'alphas', kept)) as f:
        kept_alphas = json.load(f)
    write_atomic(os.path.join(args.monitor_path, 'early_stop.txt'), lambda f: f.write(stopped['reason'] + '\n'))
    print(stopped['reason'])
    return arch, kept_alphas


RESULTS = ('Training error', 'Training loss', 'Validation error', 'Validation loss')  # of the last epoch


def report(args, space, arch, final_alphas, run):
    """Write the search's results (alphas.json, the arch JSON, the cell diagrams, results.json: ``run``,
    what the space says of the arch) and say how to retrain the arch."""
    write_json(final_alphas, os.path.join(args.monitor_path, 'alphas.json'))
    genotype.save(arch, args.model_arch_name, space)
    draw_cells(space.diagrams(arch), args.monitor_path)
    print(space.describe(arch))
    line, found = space.arch_results(arch)
    write_json(dict(arch=args.model_arch_name, search_space=space.name, **run, **found),
               os.path.join(args.monitor_path, 'results.json'), indent=1)
    if line:
        print(line)
    print('architecture written to {}; retrain it with:\n  {}'.format(args.model_arch_name, retrain_command(args)))


def retrain_command(args):
    """The darts_train.py command that retrains the search's arch on the data the search saw."""
    flags = ['--context', args.context, '--model-arch-name', args.model_arch_name]
    flags += ['--num-nodes', args.num_nodes] if args.search_space == spaces.DEFAULT else []
    if args.benchmark_table is not None:
        flags += ['--benchmark-table', args.benchmark_table]
    if args.dataset != 'cifar10':
        flags += ['--dataset', args.dataset]
    if args.dataset_path is not None:
        flags += ['--dataset-path', args.dataset_path]
    if args.image_size != datasets.default_image_size(args.dataset):
        flags += ['--image-size', args.image_size]
    return 'python darts_train.py ' + ' '.join(shlex.quote(str(f)) for f in flags + ['--monitor-path', 'result.monitor'])


def load_halves(args):
    """The dataset and the weights' and the alphas' halves of its training set, after the checks that
    need their sizes, and the worker pool of an image folder: all before the supernet is built."""
    data = datasets.load(args.dataset, args.dataset_path, args.image_size, args.train_images)
    halves = data.train.halves()
    if len(halves[0]) < args.batch_size:
        raise UserError('--batch-size {} is larger than the {} images of each half of the training set'.format(
            args.batch_size, len(halves[0])))
    if args.hessian_every and args.hessian_batches * args.batch_size > len(halves[1]):
        raise UserError('--hessian-batches {} of --batch-size {} need more than the {} validation images'.format(
            args.hessian_batches, args.batch_size, len(halves[1])))
    if args.method == 'rsws' and args.rsws_batches * args.batch_size > len(halves[1]):
        raise UserError('--rsws-batches {} of --batch-size {} need more than the {} validation images'.format(
            args.rsws_batches, args.batch_size, len(halves[1])))
    return data, halves, worker_pool(data, args.data_workers, args.batch_size // parallel.world().size)


def main(argv=None):
    args = parse(SEARCH, argv)
    world = parallel.start(args.context)
    check_output(args.model_arch_name, '--model-arch-name')
    if os.path.exists(args.model_arch_name) and not args.resume:
        raise UserError('{} already exists: choose another --model-arch-name or move it away'.format(
            args.model_arch_name))
    space = space_of(args)
    ctx = device_context(args.context, world.device_id(args.device_id), args.type_config, args.deterministic)
    state, resumed_from = checkpoint.start(args.monitor_path, args.model_save_path, resume_config(SEARCH, args),
                                           args.resume, IMPLIED_BY_ABSENCE)
    board.check(args.tensorboard, args.resume)
    if space.name == spaces.RECURRENT:
        nn.set_default_context(ctx)
        return recurrent.search(args, space, state, resumed_from)
    data, halves, pool = load_halves(args)
    with pool or contextlib.nullcontext():
        return search(args, space, ctx, data, halves, pool, state, resumed_from)


def search(args, space, ctx, data, halves, pool, state, resumed_from):
    """The search itself: the supernet built once, the epochs run, the results written."""
    world = parallel.world()
    nn.set_default_context(ctx)
    nn.seed(args.seed)
    solvers, step, graph, method, cost = setup(args, space,
                                               network_input(args.dataset, args.dataset_path, args.image_size))
    order = ('second' if args.second_order else 'first') + ' order' if method.updates_alphas else 'no alpha step'
    world.say('supernet: {} weights, {} alphas; {}{}{}'.format(
        count_parameters(graph['weights']), count_parameters(graph['alphas']),
        '' if args.method == methods.DEFAULT else method.title + ', ', order,
        '; partial channels 1/{}'.format(args.partial_channels) if args.partial_channels > 1 else ''))
    iters_per_epoch = len(halves[0]) // args.batch_size
    loop = TrainingLoop(loop_plan(args), state, resumed_from, iters_per_epoch, solvers, CURVES + space.curves)
    extra = loop.restore()
    augment = recipe(data, jitter=args.color_jitter)
    probe = (fixed_batches(halves[1], augment, args.batch_size, args.hessian_batches, world.rank, world.size, pool)
             if args.hessian_every else None)
    if method.ranking_batches:
        method.rank_on(fixed_batches(halves[1], augment, args.batch_size, method.ranking_batches, world.rank,
                                     world.size, pool))
    end_epoch = EpochEnd(args, space, graph, solvers, probe, loop, extra, method, cost)
    batches = [training_batches(half, augment, args.batch_size, args.seed, s, state.iteration * args.batch_size,
                                world.rank, world.size, pool) for s, half in enumerate(halves)]

    def search_step(it):
        epoch = it // iters_per_epoch
        return step(batches[0].next(), batches[1].next(), epoch >= args.arch_warmup_epochs, epoch, it)

    try:
        last = loop.run(search_step, end_epoch)
    finally:
        for b in batches:
            b.close()
        loop.board.close()
    # on every rank: a derivation may read every rank's batches (rsws ranks its candidates on them)
    last_arch = method.derive(space, named_arrays(graph['alphas']), args.max_skip_connect)
    if world.is_main:
        run = dict({name.lower().replace(' ', '_'): last[name] for name in RESULTS if name in last},
                   epochs=state.epochs_done, seconds=loop.elapsed())
        if end_epoch.extra.get('early_stop'):
            run['early_stop_epoch'] = end_epoch.extra['early_stop']['epoch'] + 1
        report(args, space, *finish(args, space, last_arch, graph['alphas'], end_epoch.extra), run)
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
