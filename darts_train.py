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
import parallel
from args import TRAIN, parse
from backbone import count_parameters
from data_iterator import download_url, eval_batches, load_cifar10, make_iterator, take_first
from device import device_context, float_context
from errors import UserError, agree, run
from export import load_into_network, nnp_to_onnx, onnx_export_available, save_nnp, save_onnx
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


def build(arch, args, batch_size):
    """The training graph of ``batch_size`` images (this rank's share of --batch-size): loss with
    the aux head and drop path, main-head loss and error. With --type-config half the losses and
    errors are computed in float: nnabla-ext-cuda 1.39 has no half softmax cross entropy, and a
    float log-softmax keeps the small probabilities."""
    x, y = nn.Variable((batch_size, 3, 32, 32)), nn.Variable((batch_size, 1))
    drop_path = DropPath()
    logits, aux_logits = network(x, arch, channels(args), args.num_cells, auxiliary=args.auxiliary,
                                 drop_path=drop_path)
    with nn.context_scope(float_context(nn.get_current_context())):  # the loss in float (see losses())
        ce = F.mean(F.softmax_cross_entropy(logits, y))
        loss = ce + args.auxiliary_weight * F.mean(F.softmax_cross_entropy(aux_logits, y)) if args.auxiliary else ce
        err = F.mean(F.top_n_error(logits, y))
    if single_value_batch_norms(loss):
        raise UserError('--batch-size {} leaves one value per channel in a batch normalisation (the aux head '
                        'ends on 1x1 maps): use --batch-size {} or more, or --auxiliary False'.format(
                            args.batch_size, 2 * parallel.world().size))
    train = dict(x=x, y=y, loss=loss, ce=ce, err=err, drop_path=drop_path)
    for v in (loss, ce, train['err']):
        v.persistent = True  # read after forward: never let buffer clearing reuse them
    return train


def setup(arch, args):
    """Build the training graph once; returns its parameters, solver, loss scaler and
    ``step(batch, iteration, drop_prob)``: forward, backward, clip, update. benchmarks/bench.py
    times this same step. Under mpirun each rank computes its rows of the global ``batch`` and
    the gradients and BN statistics are averaged over the ranks before the clip (parallel.py)."""
    world = parallel.world()
    train = build(arch, args, args.batch_size // world.size)
    params = nn.get_parameters(grad_only=True)
    reduce_grads = parallel.grad_reducer(params, with_buffers=True)
    scaler = LossScaler(args.type_config == 'half')
    with nn.context_scope(float_context(nn.get_current_context())):  # float master weights, float clip
        solver = S.Momentum(args.model_lr, MOMENTUM)
        solver.set_parameters(params)
        clipper = GradClipper(params, args.grad_clip_value_model)

    def step(batch, it, drop_prob):
        train['x'].d, train['y'].d = world.shard(batch)
        train['drop_path'].refresh(np.random.RandomState([args.seed, 3, it]), drop_prob, world.rank, world.size)
        nn.forward_all([train['loss'], train['ce'], train['err']], clear_no_need_grad=True)
        solver.zero_grad()
        scaler.backward(train['loss'])
        if reduce_grads:
            reduce_grads()
        if scaler.unscale(solver):
            clipper(solver)
            solver.weight_decay(args.weight_decay_model)
            solver.update()
        return world.mean_values({'Training loss': float(train['ce'].d), 'Training error': float(train['err'].d),
                                  'Training objective': float(train['loss'].d)})

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


def export_onnx(arch, args, path):
    """Write the inference network as ONNX (opset 11, any batch size; see export.py)."""
    test = build_test(arch, args, 1)
    save_onnx(path, test['x'], test['logits'])


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


def evaluate(test, images, labels, batch_size, interrupts):
    """Mean test loss and error over every test image exactly once. Under mpirun each rank
    computes its rows of each global batch of ``batch_size`` and the sums are added up."""
    world, loss, err = parallel.world(), 0.0, 0.0
    for x, y, n in eval_batches(images, labels, batch_size):
        interrupts.check()
        rows = world.rows(batch_size)
        test['x'].d, test['y'].d = x[rows], y[rows]
        nn.forward_all([test['loss'], test['err']], clear_buffer=True)
        valid = max(0, min(n - rows.start, rows.stop - rows.start))  # the rows that are real images
        loss += float(test['loss'].d[:valid].sum())
        err += float(test['err'].d[:valid].sum())
    loss, err = world.sum_floats([loss, err])
    return loss / len(labels), err / len(labels)


def use_saved(arch, args):
    """--eval-only, --export-nnp and --export-onnx: the test error, .nnp or ONNX file of saved parameters."""
    for path, flag in ((args.export_nnp, '--export-nnp'), (args.export_onnx, '--export-onnx')):
        if path:  # refused now rather than after an evaluation
            check_output(path, flag)
    if args.export_onnx and not onnx_export_available():
        raise UserError('--export-onnx needs the export dependencies: pip install --no-deps -r requirements-export.txt')
    world = parallel.world()
    test = build_test(arch, args, args.batch_size // world.size)
    load_into_network(args.model_load_path)  # checked before the data is read (or downloaded)
    if args.eval_only:
        _, _, test_x, test_y = load_cifar10(args.dataset_path, url=download_url())
        test_x, test_y = take_first(test_x, test_y, args.test_images)
    agree()  # under mpirun: all ranks ready, or all stop with the first error
    if args.eval_only:
        with InterruptFlag() as interrupts:
            loss, err = evaluate(test, test_x, test_y, args.batch_size, interrupts)
        world.say('test loss: {:.4f}\ntest error: {:.2f}%'.format(loss, 100 * err))
    if args.export_nnp and world.is_main:
        export_nnp(arch, args, args.export_nnp)
        print('inference network written to {}'.format(args.export_nnp))
    if args.export_onnx and world.is_main:
        export_onnx(arch, args, args.export_onnx)
        print('ONNX network written to {}'.format(args.export_onnx))
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
    world = parallel.start(args.context)
    if args.plot or args.summary_only:  # nothing to compute together: rank 0 alone prints them
        agree()  # (so that an error of rank 0's is printed by it, not waited for by the others)
        if not world.is_main:
            return 0
    if args.plot:
        return plot_runs(args.plot)
    arch = genotype.load(args.model_arch_name, args.num_nodes)
    if args.summary_only:
        print(summary(arch, args))
        return 0
    nn.set_default_context(device_context(args.context, world.device_id(args.device_id), args.type_config,
                                          args.deterministic))
    if args.eval_only or args.export_nnp or args.export_onnx:
        return use_saved(arch, args)
    config = dict(arch=arch, num_cells=args.num_cells, channels=channels(args), auxiliary=args.auxiliary,
                  batch_size=args.batch_size, seed=args.seed, train_images=args.train_images)
    state, resumed_from = checkpoint.start(args.monitor_path, args.model_save_path, config, args.resume)
    nn.seed(args.seed)
    params, solver, scaler, step = setup(arch, args)
    test = build_test(arch, args, args.batch_size // world.size)
    train_x, train_y, test_x, test_y = load_cifar10(args.dataset_path, url=download_url())
    train_x, train_y = take_first(train_x, train_y, args.train_images)
    test_x, test_y = take_first(test_x, test_y, args.test_images)
    if len(train_y) < args.batch_size:
        raise UserError('--batch-size {} is larger than the {} training images'.format(
            args.batch_size, len(train_y)))
    world.say(genotype.describe(arch))
    n_params = parameter_counts(params)[0]
    world.say('trainable parameters: {}'.format(n_params))
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
    if world.is_main:
        write_outputs(arch, args, last, state, n_params, loop.elapsed())
    world.say('test error: {:.2f}%'.format(100 * last['Test error']))
    return 0


def write_outputs(arch, args, last, state, n_params, seconds):
    """params.h5, model.nnp and results.json of a finished run (rank 0's job under mpirun)."""
    nn.save_parameters(os.path.join(args.model_save_path, 'params.h5'))
    nnp = os.path.join(args.model_save_path, 'model.nnp')
    export_nnp(arch, args, nnp)
    results = dict(test_error=last['Test error'], test_loss=last['Test loss'], epochs=args.epoch,
                   iterations=state['iteration'], parameters=n_params, seconds=seconds,
                   arch=args.model_arch_name)
    write_json(results, os.path.join(args.monitor_path, 'results.json'), indent=1)
    onnx_beside(nnp)


if __name__ == '__main__':
    sys.exit(run(main))
