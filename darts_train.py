"""Retrain a DARTS cell from an arch JSON on CIFAR-10 and report its test error.

    python darts_train.py --context cudnn --epoch 600 --batch-size 96 --num-cells 20 \\
        --cutout True --monitor-path result.monitor --model-arch-name arch.json
"""
import os
import sys

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S

import checkpoint
import genotype
from args import TRAIN, parse
from backbone import count_parameters
from data_iterator import download_url, eval_batches, load_cifar10, make_iterator, take_first
from device import device_context, float_context
from errors import UserError, run
from export import load_into_network, save_nnp
from files import check_output, write_json
from loop import InterruptFlag, Log, TrainingLoop
from model_eval import DropPath, network
from numerics import MOMENTUM, GradClipper, LossScaler, cosine_lr, set_momentum_lr
from plots import learning_curves, read_series

CURVES = (('error', ('Training error', 'Test error')), ('loss', ('Training loss', 'Test loss')),
          ('learning rate', ('Learning rate',)))


def channels(args):
    """C of the retraining network: --output-filter plus --additional-filters-on-retrain."""
    return args.output_filter + args.additional_filters_on_retrain


def parameter_counts(params):
    """Trainable parameters of the network proper and of its auxiliary head."""
    aux = count_parameters({k: v for k, v in params.items() if k.startswith('aux/')})
    return count_parameters(params) - aux, aux


def summary(arch, args):
    """The cells and the trainable-parameter counts, without touching any data."""
    network(nn.Variable((1, 3, 32, 32)), arch, channels(args), args.num_cells, auxiliary=True)
    body, aux = parameter_counts(nn.get_parameters(grad_only=True))
    return '{}\ntrainable parameters: {} (aux head: {})'.format(
        genotype.describe(arch), body, aux if args.auxiliary else 'off')


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


def build(arch, args):
    """The training graph: loss with the aux head and drop path, main-head loss and error. With
    --type-config half the losses and errors are computed in float: nnabla-ext-cuda 1.39 has no
    half softmax cross entropy, and a float log-softmax keeps the small probabilities."""
    x, y = nn.Variable((args.batch_size, 3, 32, 32)), nn.Variable((args.batch_size, 1))
    drop_path = DropPath()
    logits, aux_logits = network(x, arch, channels(args), args.num_cells, auxiliary=args.auxiliary,
                                 drop_path=drop_path)
    with nn.context_scope(float_context(nn.get_current_context())):  # the loss in float (see losses())
        ce = F.mean(F.softmax_cross_entropy(logits, y))
        loss = ce + args.auxiliary_weight * F.mean(F.softmax_cross_entropy(aux_logits, y)) if args.auxiliary else ce
        err = F.mean(F.top_n_error(logits, y))
    if single_value_batch_norms(loss):
        raise UserError('--batch-size {} leaves one value per channel in a batch normalisation (the aux head '
                        'ends on 1x1 maps): use --batch-size 2 or more, or --auxiliary False'.format(args.batch_size))
    train = dict(x=x, y=y, loss=loss, ce=ce, err=err, drop_path=drop_path)
    for v in (loss, ce, train['err']):
        v.persistent = True  # read after forward: never let buffer clearing reuse them
    return train


def setup(arch, args):
    """Build the training graph once; returns its parameters, solver, loss scaler and
    ``step(batch, iteration, drop_prob)``: forward, backward, clip, update. benchmarks/bench.py
    times this same step."""
    train = build(arch, args)
    params = nn.get_parameters(grad_only=True)
    scaler = LossScaler(args.type_config == 'half')
    with nn.context_scope(float_context(nn.get_current_context())):  # float master weights, float clip
        solver = S.Momentum(args.model_lr, MOMENTUM)
        solver.set_parameters(params)
        clipper = GradClipper(params, args.grad_clip_value_model)

    def step(batch, it, drop_prob):
        train['x'].d, train['y'].d = batch
        train['drop_path'].refresh(np.random.RandomState([args.seed, 3, it]), drop_prob)
        nn.forward_all([train['loss'], train['ce'], train['err']], clear_no_need_grad=True)
        solver.zero_grad()
        scaler.backward(train['loss'])
        if scaler.unscale(solver):
            clipper(solver)
            solver.weight_decay(args.weight_decay_model)
            solver.update()
        return {'Training loss': float(train['ce'].d), 'Training error': float(train['err'].d),
                'Training objective': float(train['loss'].d)}

    return params, solver, scaler, step


def build_test(arch, args, batch_size):
    """The test graph (BN statistics, no aux head, no drop path): per-image loss and error."""
    x, y = nn.Variable((batch_size, 3, 32, 32)), nn.Variable((batch_size, 1))
    logits, _ = network(x, arch, channels(args), args.num_cells, test=True)
    with nn.context_scope(float_context(nn.get_current_context())):
        test = dict(x=x, y=y, logits=logits, loss=F.softmax_cross_entropy(logits, y), err=F.top_n_error(logits, y))
    test['loss'].persistent = test['err'].persistent = True
    return test


def export_nnp(arch, args, path):
    """Write the inference network (batch size 1; any batch size runs it) as .nnp."""
    test = build_test(arch, args, 1)
    save_nnp(path, test['x'], test['logits'])


def evaluate(test, images, labels, batch_size, interrupts):
    """Mean test loss and error over every test image exactly once."""
    loss = err = 0.0
    for x, y, n in eval_batches(images, labels, batch_size):
        interrupts.check()
        test['x'].d, test['y'].d = x, y
        nn.forward_all([test['loss'], test['err']], clear_buffer=True)
        loss += float(test['loss'].d[:n].sum())
        err += float(test['err'].d[:n].sum())
    return loss / len(labels), err / len(labels)


def use_saved(arch, args):
    """--eval-only and --export-nnp: the test error or the .nnp of saved parameters."""
    if args.export_nnp:  # refused now rather than after an evaluation
        check_output(args.export_nnp, '--export-nnp')
    test = build_test(arch, args, args.batch_size)
    load_into_network(args.model_load_path)  # checked before the data is read (or downloaded)
    if args.eval_only:
        _, _, test_x, test_y = load_cifar10(args.dataset_path, url=download_url())
        test_x, test_y = take_first(test_x, test_y, args.test_images)
        with InterruptFlag() as interrupts:
            loss, err = evaluate(test, test_x, test_y, args.batch_size, interrupts)
        print('test loss: {:.4f}\ntest error: {:.2f}%'.format(loss, 100 * err))
    if args.export_nnp:
        export_nnp(arch, args, args.export_nnp)
        print('inference network written to {}'.format(args.export_nnp))
    return 0


def plot_runs(folders, path='performance.png'):
    """--plot: the learning curves of one or several runs in one figure."""
    for folder in folders:
        if read_series(folder, 'Test error') is None:
            raise UserError('{} holds no Test-error.series.txt: not a monitor folder of darts_train.py'.format(folder))
    learning_curves(folders, path, CURVES)
    print('learning curves of {} written to {}'.format(', '.join(folders), path))
    return 0


def main(argv=None):
    args = parse(TRAIN, argv)
    if args.plot:
        return plot_runs(args.plot)
    arch = genotype.load(args.model_arch_name, args.num_nodes)
    if args.summary_only:
        print(summary(arch, args))
        return 0
    nn.set_default_context(device_context(args.context, args.device_id, args.type_config, args.deterministic))
    if args.eval_only or args.export_nnp:
        return use_saved(arch, args)
    config = dict(arch=arch, num_cells=args.num_cells, channels=channels(args), auxiliary=args.auxiliary,
                  batch_size=args.batch_size, seed=args.seed, train_images=args.train_images)
    state, resumed_from = checkpoint.start(args.monitor_path, args.model_save_path, config, args.resume)
    nn.seed(args.seed)
    params, solver, scaler, step = setup(arch, args)
    test = build_test(arch, args, args.batch_size)
    train_x, train_y, test_x, test_y = load_cifar10(args.dataset_path, url=download_url())
    train_x, train_y = take_first(train_x, train_y, args.train_images)
    test_x, test_y = take_first(test_x, test_y, args.test_images)
    if len(train_y) < args.batch_size:
        raise UserError('--batch-size {} is larger than the {} training images'.format(
            args.batch_size, len(train_y)))
    print(genotype.describe(arch))
    n_params = parameter_counts(params)[0]
    print('trainable parameters: {}'.format(n_params))
    loop = TrainingLoop(state, resumed_from, args.epoch, len(train_y) // args.batch_size, args.model_save_interval,
                        args.model_save_path, {'weights': solver},
                        Log(args.monitor_path, CURVES, state['epochs_done'] if resumed_from else None))
    scaler.scale = loop.restore().get('loss_scale', scaler.scale)
    data = make_iterator(train_x, train_y, args.batch_size, args.seed,
                         cutout=args.cutout_length if args.cutout else 0, start=state['iteration'] * args.batch_size)
    schedule = {}

    def begin_epoch(epoch):
        lr = cosine_lr(epoch, args.epoch, args.model_lr, args.min_model_lr)
        set_momentum_lr(solver, lr)
        schedule['drop_prob'] = args.dropout_rate * epoch / args.epoch
        return {'Learning rate': lr}

    def train_step(it):
        values = step(data.next(), it, schedule['drop_prob'])
        state['extra']['loss_scale'] = scaler.scale
        return values

    def end_epoch(epoch, interrupts):
        loss, err = evaluate(test, test_x, test_y, args.batch_size, interrupts)
        return {'Test loss': loss, 'Test error': err}

    try:
        last = loop.run(begin_epoch, train_step, end_epoch)
    finally:
        data.close()
    nn.save_parameters(os.path.join(args.model_save_path, 'params.h5'))
    export_nnp(arch, args, os.path.join(args.model_save_path, 'model.nnp'))
    results = dict(test_error=last['Test error'], test_loss=last['Test loss'], epochs=args.epoch,
                   iterations=state['iteration'], parameters=n_params, seconds=loop.elapsed(),
                   arch=args.model_arch_name)
    write_json(results, os.path.join(args.monitor_path, 'results.json'), indent=1)
    print('test error: {:.2f}%'.format(100 * last['Test error']))
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
