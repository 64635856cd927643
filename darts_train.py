"""Retrain a cell from an arch JSON (of the DARTS space or NAS-Bench-201's) on the dataset of
--dataset (CIFAR-10 by default, CIFAR-100, SVHN, ImageNet in the paper's mobile setting, image
folders) and report its test error.

    python darts_train.py --context cudnn --epoch 600 --batch-size 96 --num-cells 20 \\
        --cutout True --monitor-path result.monitor --model-arch-name arch.json
"""
import contextlib
import json
import os
import sys

import numpy as np
import nnabla as nn

import board
import checkpoint
import datasets
import genotype
import parallel
import recurrent
import spaces
from args import IMPLIED_BY_ABSENCE, TRAIN, loop_plan, parse, resume_config, space_of
from data_iterator import eval_batches, network_input, recipe, training_batches, worker_pool
from device import device_context, float_context
from errors import UserError, agree, run
from export import load_into_network, nnp_to_onnx, onnx_export_available, save_nnp, save_onnx
from files import check_output, write_json
from loop import InterruptFlag, TrainingLoop
from model_eval import build, build_test, multiply_adds, parameter_counts
from numerics import LossScaler, WeightUpdate, momentum_sgd, running_statistics
from plots import learning_curves, read_series
from spaces.space import Net
from tasks.classification import TOP5, error_lines, evaluate

CURVES = (('error', ('Training error', 'Test error', TOP5)), ('loss', ('Training loss', 'Test loss')),
          ('learning rate', ('Learning rate',)))


def channels(args):
    """C of the retraining network: --output-filter plus --additional-filters-on-retrain."""
    return args.output_filter + args.additional_filters_on_retrain


def network_of(args, data):
    """The retraining network's spaces.space.Net from the flags, fed ``data``."""
    return Net(channels(args), args.num_cells, data, auxiliary=args.auxiliary)


def summary(space, arch, args, data):
    """The cells, the trainable-parameter counts and the multiply-adds of one image, without
    touching any image."""
    net = network_of(args, data)
    space.network(nn.Variable((1, 3, data.size, data.size)), arch, net)
    body, aux = parameter_counts(nn.get_parameters(grad_only=True))
    logits = build_test(space, arch, net, 1)['logits']
    line = space.arch_results(arch)[0]
    return '{}\ninput: {}x{} images of {} classes ({})\ntrainable parameters: {} (aux head: {})\n' \
        'multiply-adds: {} per {}x{} image'.format(space.describe(arch) + ('\n' + line if line else ''), data.size,
                                                   data.size, data.classes, args.dataset, body,
                                                   aux if args.auxiliary else 'off', multiply_adds(logits),
                                                   data.size, data.size)


def setup(space, arch, args, data):
    """Build the training graph of ``arch`` in ``space`` once; returns its parameters, solver, loss
    scaler and ``step(batch, iteration, drop_prob)``: forward, backward, clip, update.
    benchmarks/bench.py times this same step. Under mpirun ``batch`` is this rank's rows of the
    global batch, and the gradients and BN statistics are averaged over the ranks before the clip
    (parallel.py)."""
    world = parallel.world()
    graph = build(space, arch, network_of(args, data), args.batch_size // world.size, args.label_smoothing,
                  args.auxiliary_weight)
    params = nn.get_parameters(grad_only=True)
    reduce_grads = parallel.grad_reducer(params, running_statistics())
    scaler = LossScaler(args.type_config == 'half')
    with nn.context_scope(float_context(nn.get_current_context())):  # float master weights, float clip
        solver = momentum_sgd(args.model_lr, args.momentum, args.nesterov)
        solver.set_parameters(params)
        update_weights = WeightUpdate(solver, params, args.grad_clip_value_model, args.weight_decay_model)

    def step(batch, it, drop_prob):
        graph['x'].d, graph['y'].d = batch
        graph['drop_path'].refresh(np.random.RandomState([args.seed, 3, it]), drop_prob, world.rank, world.size)
        nn.forward_all([graph['loss'], graph['ce'], graph['err']], clear_no_need_grad=True)
        solver.zero_grad()
        scaler.backward(graph['loss'])
        if reduce_grads:
            reduce_grads()
        if scaler.unscale(solver):
            update_weights()
        return world.mean_values({'Training loss': float(graph['ce'].d), 'Training error': float(graph['err'].d),
                                  'Training objective': float(graph['loss'].d)})

    return params, solver, scaler, step


def reports_top5(data):
    """Whether the top-5 error of a network fed ``data`` is reported beside the top-1 error: for more
    than 10 classes, or more than 5 on the ImageNet network, as ImageNet results report it."""
    return data.classes > 10 or data.imagenet and data.classes > 5


EXPORTS = (('export_nnp', save_nnp, 'inference network'), ('export_onnx', save_onnx, 'ONNX network'))


def export(space, arch, net, path, save=save_nnp):
    """Write the inference network (batch size 1; any batch size runs it) with ``save``: as .nnp
    (export.save_nnp) or as ONNX (export.save_onnx: opset 11, any batch size)."""
    test = build_test(space, arch, net, 1)
    save(path, test['x'], test['logits'])


def onnx_beside(nnp_path):
    """model.onnx beside the model.nnp of a finished retraining, or a one-line note when the optional
    export dependencies are not installed or fail: the run has succeeded either way, and
    --export-onnx can write the file later from params.h5."""
    path = os.path.splitext(nnp_path)[0] + '.onnx'
    if not onnx_export_available():
        print('{} not written: ONNX export needs pip install --no-deps -r requirements-export.txt'.format(path))
        return
    try:
        nnp_to_onnx(nnp_path, path)
    except Exception as e:  # an optional file: its failure must not fail a finished training
        if os.path.exists(path + '.tmp'):  # write_atomic's partial file
            os.remove(path + '.tmp')
        print('{} not written: {}: {}'.format(path, type(e).__name__, e))
        return
    print('ONNX network written to {}'.format(path))


def test_batches(data, args, pool):
    """This rank's test batches of the dataset (rows of the global batches of --batch-size)."""
    world = parallel.world()
    return eval_batches(data.test, recipe(data), args.batch_size, world.rank, world.size, pool)


def use_saved(space, arch, args):
    """--eval-only, --export-nnp and --export-onnx: the test error, .nnp or ONNX file of saved parameters."""
    for name, _, _ in EXPORTS:
        if getattr(args, name):  # refused now rather than after an evaluation
            check_output(getattr(args, name), '--' + name.replace('_', '-'))
    if args.export_onnx and not onnx_export_available():
        raise UserError('--export-onnx needs the export dependencies: pip install --no-deps -r requirements-export.txt')
    world = parallel.world()
    net = network_of(args, network_input(args.dataset, args.dataset_path, args.image_size))
    test = build_test(space, arch, net, args.batch_size // world.size)
    load_into_network(args.model_load_path)  # checked before the data is read (or downloaded)
    if args.eval_only:
        data = datasets.load(args.dataset, args.dataset_path, args.image_size, test_images=args.test_images,
                             with_train=False)
    agree()  # under mpirun: all ranks ready, or all stop with the first error
    if args.eval_only:
        pool = worker_pool(data, args.data_workers, args.batch_size // world.size)
        with pool or contextlib.nullcontext(), InterruptFlag() as interrupts:
            values = evaluate(test, test_batches(data, args, pool), len(data.test), interrupts)
        world.say('test loss: {:.4f}\n{}'.format(values['Test loss'], error_lines(values)))
    for name, save, what in EXPORTS:
        if getattr(args, name) and world.is_main:
            export(space, arch, net, getattr(args, name), save)
            print('{} written to {}'.format(what, getattr(args, name)))
    return 0


def plot_runs(folders, path='performance.png'):
    """--plot: the learning curves of one or several runs in one figure."""
    for folder in folders:
        if read_series(folder, 'Test error') is None:
            raise UserError('{} holds no Test-error.series.txt: not a monitor folder of darts_train.py'.format(folder))
    learning_curves(folders, path, CURVES)
    print('learning curves of {} written to {}'.format(', '.join(folders), path))
    return 0


def load_data(args):
    """The dataset, checked against --batch-size, and the worker pool of an image folder (None for
    the archives, or with --data-workers 0): both before the network is built."""
    data = datasets.load(args.dataset, args.dataset_path, args.image_size, args.train_images, args.test_images)
    if len(data.train) < args.batch_size:
        raise UserError('--batch-size {} is larger than the {} training images'.format(
            args.batch_size, len(data.train)))
    return data, worker_pool(data, args.data_workers, args.batch_size // parallel.world().size)


def main(argv=None):
    args = parse(TRAIN, argv)
    world = parallel.start(args.context)
    if args.plot or args.summary_only:  # nothing to compute together: rank 0 alone prints them
        agree()  # (so that an error of rank 0's is printed by it, not waited for by the others)
        return (plot_runs(args.plot) if args.plot else print_summary(args)) if world.is_main else 0
    space = space_of(args)
    arch = genotype.load(args.model_arch_name, space)
    nn.set_default_context(device_context(args.context, world.device_id(args.device_id), args.type_config,
                                          args.deterministic))
    if space.name == spaces.RECURRENT and (args.export_nnp or args.export_onnx):
        raise UserError('--export-nnp and --export-onnx are for the image spaces so far')
    if args.eval_only or args.export_nnp or args.export_onnx:
        return recurrent.evaluate_saved(args, arch) if space.name == spaces.RECURRENT else use_saved(space, arch, args)
    state, resumed_from = checkpoint.start(args.monitor_path, args.model_save_path,
                                           dict(resume_config(TRAIN, args), arch=json.loads(json.dumps(arch))),
                                           args.resume, IMPLIED_BY_ABSENCE)
    board.check(args.tensorboard, args.resume)
    if space.name == spaces.RECURRENT:
        return recurrent.train(args, space, arch, state, resumed_from)
    data, pool = load_data(args)
    with pool or contextlib.nullcontext():
        return train(space, arch, args, data, pool, state, resumed_from)


def print_summary(args):
    """--summary-only: the cells, parameter counts and multiply-adds, from the flags alone."""
    space = space_of(args)
    arch = genotype.load(args.model_arch_name, space)
    if space.name == spaces.RECURRENT:
        print(recurrent.summary(args, space, arch))
        return 0
    print(summary(space, arch, args, network_input(args.dataset, args.dataset_path, args.image_size)))
    return 0


def train(space, arch, args, data, pool, state, resumed_from):
    """The retraining itself: the graphs built once, the epochs run, the results written."""
    world = parallel.world()
    net = network_of(args, network_input(args.dataset, args.dataset_path, args.image_size))
    nn.seed(args.seed)
    params, solver, scaler, step = setup(space, arch, args, net.data)
    test = build_test(space, arch, net, args.batch_size // world.size)
    world.say(space.describe(arch))
    n_params = parameter_counts(params)[0]
    world.say('trainable parameters: {}'.format(n_params))
    iters_per_epoch = len(data.train) // args.batch_size
    loop = TrainingLoop(loop_plan(args), state, resumed_from, iters_per_epoch, {'weights': solver}, CURVES)
    scaler.scale = loop.restore().get('loss_scale', scaler.scale)
    batches = training_batches(data.train, recipe(data, args.cutout_length if args.cutout else 0, args.color_jitter),
                               args.batch_size, args.seed, start=state.iteration * args.batch_size,
                               rank=world.rank, size=world.size, pool=pool)

    def train_step(it):
        values = step(batches.next(), it, args.dropout_rate * (it // iters_per_epoch) / args.epoch)
        state.extra['loss_scale'] = scaler.scale
        return values

    def end_epoch(epoch, interrupts):
        return evaluate(test, test_batches(data, args, pool), len(data.test), interrupts)

    try:
        last = loop.run(train_step, end_epoch)
        if world.is_main:
            write_outputs(space, arch, net, args, last, state, n_params, loop.elapsed())
        loop.board.hparams(hyperparameters(args), {name: last[name] for name in ('Test error', TOP5) if name in last})
    finally:
        batches.close()
        loop.board.close()
    world.say(error_lines(last))
    return 0


def hyperparameters(args):
    """The flags that tell retrainings apart, for TensorBoard's hparams tab."""
    names = ('dataset', 'model_arch_name', 'epoch', 'batch_size', 'num_cells', 'model_lr', 'lr_schedule',
             'weight_decay_model', 'label_smoothing', 'auxiliary', 'auxiliary_weight', 'dropout_rate', 'cutout',
             'image_size', 'seed', 'type_config')
    return dict({name: getattr(args, name) for name in names}, channels=channels(args))


def write_outputs(space, arch, net, args, last, state, n_params, seconds):
    """params.h5, model.nnp and results.json of a finished run (rank 0's job under mpirun)."""
    nn.save_parameters(os.path.join(args.model_save_path, 'params.h5'))
    nnp = os.path.join(args.model_save_path, 'model.nnp')
    export(space, arch, net, nnp)
    found = dict(test_error=last['Test error'], test_loss=last['Test loss'], epochs=args.epoch,
                 iterations=state.iteration, parameters=n_params, seconds=seconds, arch=args.model_arch_name)
    if args.dataset != 'cifar10':
        found['dataset'] = args.dataset
    if space.name != spaces.DEFAULT:
        found.update(dict(search_space=space.name, **space.arch_results(arch)[1]))
    if TOP5 in last:
        found['test_error_top5'] = last[TOP5]
    write_json(found, os.path.join(args.monitor_path, 'results.json'), indent=1)
    onnx_beside(nnp)


if __name__ == '__main__':
    sys.exit(run(main))
