"""Retrain a DARTS cell from an arch JSON on the dataset of --dataset (CIFAR-10 by default,
CIFAR-100, SVHN, ImageNet in the paper's mobile setting, image folders) and report its test error.

    python darts_train.py --context cudnn --epoch 600 --batch-size 96 --num-cells 20 \\
        --cutout True --monitor-path result.monitor --model-arch-name arch.json
"""
import contextlib
import os
import sys

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S

import board
import checkpoint
import datasets
import genotype
import parallel
from args import IMPLIED_BY_ABSENCE, TRAIN, loop_plan, parse, resume_config
from backbone import CIFAR10, count_parameters, multiply_adds
from data_iterator import eval_batches, network_input, recipe, training_batches, worker_pool
from device import device_context, float_context
from errors import UserError, agree, run
from export import load_into_network, nnp_to_onnx, onnx_export_available, save_nnp, save_onnx
from files import check_output, write_json
from loop import InterruptFlag, TrainingLoop
from model_eval import DropPath, network
from numerics import LossScaler, WeightUpdate, running_statistics
from plots import learning_curves, read_series

TOP5 = 'Test error top-5'  # logged where reports_top5
CURVES = (('error', ('Training error', 'Test error', TOP5)), ('loss', ('Training loss', 'Test loss')),
          ('learning rate', ('Learning rate',)))


def channels(args):
    """C of the retraining network: --output-filter plus --additional-filters-on-retrain."""
    return args.output_filter + args.additional_filters_on_retrain


def parameter_counts(params):
    """Trainable parameters of the network proper and of its auxiliary head."""
    aux = count_parameters({k: v for k, v in params.items() if k.startswith('aux/')})
    return count_parameters(params) - aux, aux


def summary(arch, args, data):
    """The cells, the trainable-parameter counts and the multiply-adds of one image, without
    touching any image."""
    network(nn.Variable((1, 3, data.size, data.size)), arch, channels(args), args.num_cells, data.classes,
            auxiliary=args.auxiliary, imagenet=data.imagenet)
    body, aux = parameter_counts(nn.get_parameters(grad_only=True))
    logits = build_test(arch, args, 1, data)['logits']
    return '{}\ninput: {}x{} images of {} classes ({})\ntrainable parameters: {} (aux head: {})\n' \
        'multiply-adds: {} per {}x{} image'.format(genotype.describe(arch), data.size, data.size, data.classes,
                                                   args.dataset, body, aux if args.auxiliary else 'off',
                                                   multiply_adds(logits), data.size, data.size)


def single_value_batch_norms(output):
    """The names of the BNs of ``output`` that normalise over one value per channel (their
    variance is 0: such a batch trains nothing and drives the weights to NaN)."""
    found = []

    def visit(f):
        if f.info.type_name == 'BatchNormalization' and f.info.args['batch_stat']:
            x = f.inputs[0]
            if x.size // x.shape[1] < 2:
                found.append(f.name)
    output.visit(visit)
    return found


def training_loss(logits, y, smoothing):
    """The mean cross entropy of ``logits`` with label smoothing ``smoothing`` (the paper's ImageNet
    recipe: 0.1): targets (1 - s) one-hot + s / K, so -(1 - s) log p_y - s mean_k log p_k."""
    ce = F.softmax_cross_entropy(logits, y)
    if not smoothing:
        return F.mean(ce)
    uniform = -F.mean(F.log_softmax(logits, axis=1), axis=1, keepdims=True)
    return F.mean((1 - smoothing) * ce + smoothing * uniform)


def build(arch, args, batch_size, data=CIFAR10):
    """The training graph of ``batch_size`` images (this rank's share of --batch-size): loss with
    the aux head, drop path and label smoothing, main-head loss (no smoothing) and error. With
    --type-config half the losses and errors are computed in float: nnabla-ext-cuda 1.39 has no
    half softmax cross entropy, and a float log-softmax keeps the small probabilities."""
    x, y = nn.Variable((batch_size, 3, data.size, data.size)), nn.Variable((batch_size, 1))
    drop_path = DropPath()
    logits, aux_logits = network(x, arch, channels(args), args.num_cells, data.classes, auxiliary=args.auxiliary,
                                 drop_path=drop_path, imagenet=data.imagenet)
    with nn.context_scope(float_context(nn.get_current_context())):  # the loss in float (see losses())
        ce = F.mean(F.softmax_cross_entropy(logits, y))
        loss = ce if not args.label_smoothing else training_loss(logits, y, args.label_smoothing)
        if args.auxiliary:
            loss = loss + args.auxiliary_weight * training_loss(aux_logits, y, args.label_smoothing)
        err = F.mean(F.top_n_error(logits, y))
    if single_value_batch_norms(loss):
        raise UserError('--batch-size {} leaves one value per channel in a batch normalisation (the aux head '
                        'ends on 1x1 maps): use --batch-size {} or more, or --auxiliary False'.format(
                            args.batch_size, 2 * parallel.world().size))
    for v in (loss, ce, err):
        v.persistent = True  # read after forward: never let buffer clearing reuse them
    return dict(x=x, y=y, loss=loss, ce=ce, err=err, drop_path=drop_path)


def setup(arch, args, data=CIFAR10):
    """Build the training graph once; returns its parameters, solver, loss scaler and
    ``step(batch, iteration, drop_prob)``: forward, backward, clip, update. benchmarks/bench.py
    times this same step. Under mpirun ``batch`` is this rank's rows of the global batch, and the
    gradients and BN statistics are averaged over the ranks before the clip (parallel.py)."""
    world = parallel.world()
    graph = build(arch, args, args.batch_size // world.size, data)
    params = nn.get_parameters(grad_only=True)
    reduce_grads = parallel.grad_reducer(params, running_statistics())
    scaler = LossScaler(args.type_config == 'half')
    with nn.context_scope(float_context(nn.get_current_context())):  # float master weights, float clip
        solver = S.Momentum(args.model_lr, args.momentum)
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


def build_test(arch, args, batch_size, data=CIFAR10):
    """The test graph (BN statistics, no aux head, no drop path): per-image loss and error (and
    top-5 error where reports_top5)."""
    x, y = nn.Variable((batch_size, 3, data.size, data.size)), nn.Variable((batch_size, 1))
    logits, _ = network(x, arch, channels(args), args.num_cells, data.classes, test=True, imagenet=data.imagenet)
    with nn.context_scope(float_context(nn.get_current_context())):
        test = dict(x=x, y=y, logits=logits, loss=F.softmax_cross_entropy(logits, y), err=F.top_n_error(logits, y))
        if reports_top5(data):
            test['err5'] = F.top_n_error(logits, y, n=5)
    for name in ('loss', 'err', 'err5'):
        if name in test:
            test[name].persistent = True
    return test


EXPORTS = (('export_nnp', save_nnp, 'inference network'), ('export_onnx', save_onnx, 'ONNX network'))


def export(arch, args, path, data=CIFAR10, save=save_nnp):
    """Write the inference network (batch size 1; any batch size runs it) with ``save``: as .nnp
    (export.save_nnp) or as ONNX (export.save_onnx: opset 11, any batch size)."""
    test = build_test(arch, args, 1, data)
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


def evaluate(test, batches, count, interrupts):
    """{'Test loss', 'Test error'(, TOP5)}: the means over the ``count`` test images of ``batches``
    (this rank's rows of every global test batch and how many are real, eval_batches). Under mpirun
    the sums of all ranks are added up."""
    names = ['Test loss', 'Test error'] + ([TOP5] if 'err5' in test else [])
    outputs = [test['loss'], test['err']] + ([test['err5']] if 'err5' in test else [])
    sums = [0.0] * len(outputs)
    for x, y, valid in batches:
        interrupts.check()
        test['x'].d, test['y'].d = x, y
        nn.forward_all(outputs, clear_buffer=True)
        sums = [total + float(v.d[:valid].sum()) for total, v in zip(sums, outputs)]
    return {name: total / count for name, total in zip(names, parallel.world().sum_floats(sums))}


def test_batches(data, args, pool):
    """This rank's test batches of the dataset (rows of the global batches of --batch-size)."""
    world = parallel.world()
    return eval_batches(data.test, recipe(data), args.batch_size, world.rank, world.size, pool)


def use_saved(arch, args):
    """--eval-only, --export-nnp and --export-onnx: the test error, .nnp or ONNX file of saved parameters."""
    for name, _, _ in EXPORTS:
        if getattr(args, name):  # refused now rather than after an evaluation
            check_output(getattr(args, name), '--' + name.replace('_', '-'))
    if args.export_onnx and not onnx_export_available():
        raise UserError('--export-onnx needs the export dependencies: pip install --no-deps -r requirements-export.txt')
    world = parallel.world()
    spec = network_input(args.dataset, args.dataset_path, args.image_size)
    test = build_test(arch, args, args.batch_size // world.size, spec)
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
            export(arch, args, getattr(args, name), spec, save)
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
    arch = genotype.load(args.model_arch_name, args.num_nodes)
    nn.set_default_context(device_context(args.context, world.device_id(args.device_id), args.type_config,
                                          args.deterministic))
    if args.eval_only or args.export_nnp or args.export_onnx:
        return use_saved(arch, args)
    state, resumed_from = checkpoint.start(args.monitor_path, args.model_save_path,
                                           dict(resume_config(TRAIN, args), arch=arch), args.resume, IMPLIED_BY_ABSENCE)
    board.check(args.tensorboard, args.resume)
    data, pool = load_data(args)
    with pool or contextlib.nullcontext():
        return train(arch, args, data, pool, state, resumed_from)


def print_summary(args):
    """--summary-only: the cells, parameter counts and multiply-adds, from the flags alone."""
    arch = genotype.load(args.model_arch_name, args.num_nodes)
    print(summary(arch, args, network_input(args.dataset, args.dataset_path, args.image_size)))
    return 0


def train(arch, args, data, pool, state, resumed_from):
    """The retraining itself: the graphs built once, the epochs run, the results written."""
    world = parallel.world()
    spec = network_input(args.dataset, args.dataset_path, args.image_size)
    nn.seed(args.seed)
    params, solver, scaler, step = setup(arch, args, spec)
    test = build_test(arch, args, args.batch_size // world.size, spec)
    world.say(genotype.describe(arch))
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
            write_outputs(arch, args, last, state, n_params, loop.elapsed(), spec)
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


def error_lines(values):
    """'test error: X.XX%' (and 'test error top-5: Y.YY%'), the last lines of a run."""
    return 'test error: {:.2f}%{}'.format(100 * values['Test error'], '\ntest error top-5: {:.2f}%'.format(
        100 * values[TOP5]) if TOP5 in values else '')


def write_outputs(arch, args, last, state, n_params, seconds, data):
    """params.h5, model.nnp and results.json of a finished run (rank 0's job under mpirun)."""
    nn.save_parameters(os.path.join(args.model_save_path, 'params.h5'))
    nnp = os.path.join(args.model_save_path, 'model.nnp')
    export(arch, args, nnp, data)
    results = dict(test_error=last['Test error'], test_loss=last['Test loss'], epochs=args.epoch,
                   iterations=state.iteration, parameters=n_params, seconds=seconds,
                   arch=args.model_arch_name)
    if args.dataset != 'cifar10':
        results['dataset'] = args.dataset
    if TOP5 in last:
        results['test_error_top5'] = last[TOP5]
    write_json(results, os.path.join(args.monitor_path, 'results.json'), indent=1)
    onnx_beside(nnp)


if __name__ == '__main__':
    sys.exit(run(main))
