"""Command-line flags of darts_search.py and darts_train.py, and the checks of their values.

Every flag is defined once here; the scripts differ only in their defaults (the paper's
search and retraining recipes, docs/reference.md) and in the few flags of their own. A search
space's recipe (spaces.space.Space.defaults) and the paper's ImageNet recipe replace some
defaults on their space and dataset; a flag given on the command line always wins.
"""
import argparse
import functools
import json
import math

import board
import corpora
import datasets
import methods
import parallel
import spaces
import workers
from errors import Parser, UserError
from genotype import skip_cap_rule, space_named
from loop import Plan
from numerics import epoch_lr

SEARCH, TRAIN = 'search', 'train'
HESSIAN_BATCHES = 1  # at most 4.4 % of an epoch at the paper's size (docs/collapse.md, Cost)
DEFAULTS = {
    SEARCH: dict(epoch=50, batch_size=64, num_cells=8, output_filter=16,
                 additional_filters_on_retrain=0, model_lr=0.025, min_model_lr=0.001,
                 monitor_path='search.monitor', model_arch_name='DARTS_arch.json'),
    TRAIN: dict(epoch=600, batch_size=96, num_cells=20, output_filter=16,
                additional_filters_on_retrain=20, model_lr=0.025, min_model_lr=0.0,
                monitor_path='train.monitor', model_arch_name='DARTS_arch.json'),
}
COMMON = dict(weight_decay_model=3e-4, lr_schedule='cosine', color_jitter=(0.0, 0.0, 0.0, 0.0),
              label_smoothing=0.0, dropout_rate=0.2, cutout=True, num_nodes=7, nesterov=False, auxiliary=True,
              grad_clip_value_model=5.0, momentum=0.9, arch_lr=3e-4, hessian_every=1)
# the recurrent space's own flags (spaces/darts_rnn/__init__.py has their defaults)
RECURRENT_FLAGS = ('embedding_size', 'hidden_size', 'bptt', 'dropout_output', 'dropout_hidden', 'dropout_x',
                   'dropout_input', 'dropout_embedding', 'tar')
# the paper's ImageNet recipe (mobile setting, its train_imagenet.py): the retraining defaults of --dataset imagenet
IMAGENET_RECIPE = dict(epoch=250, batch_size=128, num_cells=14, additional_filters_on_retrain=32, model_lr=0.1,
                       lr_schedule='exponential', weight_decay_model=3e-5, label_smoothing=0.1, dropout_rate=0.0,
                       cutout=False, color_jitter=(0.4, 0.4, 0.4, 0.2))
# the flags whose defaults --dataset or --search-space change, and those a space may refuse: filled in after parsing
RECIPE_FLAGS = tuple(sorted({'image_size', 'num_nodes'} | set(IMAGENET_RECIPE) | {
    name for space in spaces.SPACES.values() for recipe in space.defaults.values() for name in recipe}))


def recipe_default(script, dataset, space, name):
    """The default of flag ``name`` of ``script`` on ``dataset`` in the search space named ``space``."""
    if name == 'image_size':
        return datasets.default_image_size(dataset)
    recipe = spaces.SPACES[space].defaults.get(script, {})
    if name in recipe:
        return recipe[name]
    if script == TRAIN and dataset == 'imagenet' and name in IMAGENET_RECIPE:
        return IMAGENET_RECIPE[name]
    return DEFAULTS[script].get(name, COMMON.get(name))


def shown(script, name):
    """The default of a recipe flag as its help shows it: CIFAR-10's in the DARTS space, and where
    ImageNet or another space changes it, theirs."""
    words = (lambda v: ' '.join(map(str, v)) if isinstance(v, tuple) else str(v))
    default = recipe_default(script, 'cifar10', spaces.DEFAULT, name)
    others = [('imagenet', recipe_default(script, 'imagenet', spaces.DEFAULT, name))] + [
        (space, recipe_default(script, 'cifar10', space, name)) for space in spaces.NAMES[1:]]
    return '(default {}{})'.format(words(default), ''.join(
        '; {}: {}'.format(where, words(value)) for where, value in others if value != default))


def boolean(text):
    """True/False/1/0/yes/no (argparse's type=bool would make 'False' true)."""
    value = {'true': True, '1': True, 'yes': True, 'false': False, '0': False, 'no': False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError('expected True/False/1/0/yes/no, got {!r}'.format(text))
    return value


def parse(script, argv=None):
    """Parse and check the flags of ``script`` (SEARCH or TRAIN)."""
    d = DEFAULTS[script]
    p = Parser(prog='darts_{}.py'.format(script), description='DARTS {} (nnabla)'.format(
        'architecture search' if script == SEARCH else 'retraining of a derived cell'))

    def add(*names, **options):  # a recipe flag's default is filled in after parsing
        name = names[0][2:].replace('-', '_')
        if name in RECIPE_FLAGS:
            options['help'] = '{} {}'.format(options['help'], shown(script, name))
            options['default'] = None
        p.add_argument(*names, **options)
    add('--context', '-c', default='cudnn', choices=('cpu', 'cudnn'), help='nnabla extension')
    add('--device-id', '-d', type=int, default=0, help='GPU id')
    add('--type-config', '-t', default='float', choices=('float', 'half'), help='float, or half (cudnn)')
    add('--deterministic', type=boolean, default=False,
        help='cudnn: deterministic cuDNN algorithms (NNABLA_CUDNN_DETERMINISTIC), for runs that repeat exactly')
    add('--dataset', default='cifar10', choices=datasets.NAMES + corpora.NAMES,
        help='what to train on: the archives (downloaded without --dataset-path), an image folder, or a text '
             'corpus (ptb, text: the recurrent space)')
    add('--search-space', default=None, choices=spaces.NAMES,
        help='the search space (default {}; {})'.format(spaces.DEFAULT, 'its own in an arch file that names one'
                                                        if script == TRAIN else 'docs/reference.md'))
    add('--benchmark-table', default=None, metavar='FILE',
        help='NAS-Bench-201: another file of the table\'s columns (default: the one in spaces/nas_bench_201/)')
    add('--epoch', '-e', type=int, help='epochs')
    add('--batch-size', '-b', type=int, help='batch size (the global batch under mpirun)')
    add('--num-cells', type=int, help='cells in the network (L)')
    add('--num-nodes', type=int, help='nodes in a DARTS cell: 2 inputs, intermediates, 1 output')
    add('--output-filter', type=int, help='channels of the first cells (C)')
    add('--additional-filters-on-retrain', '-f', type=int,
        help='channels added to --output-filter when retraining (16 + 20 = the paper\'s 36)')
    add('--model-lr', type=float, help='initial weight learning rate')
    add('--min-model-lr', type=float, help='final weight learning rate (cosine)')
    add('--lr-schedule', choices=('cosine', 'exponential', 'constant'),
        help='per epoch: cosine to --min-model-lr, times --lr-gamma, or constant')
    add('--lr-gamma', type=float, default=0.97, help='exponential schedule: the factor of every epoch')
    add('--momentum', type=float, help='SGD momentum of the weights')
    add('--nesterov', type=boolean, help='Nesterov momentum (PyTorch\'s SGD with nesterov=True)')
    add('--weight-decay-model', type=float, help='weight decay of the weights')
    add('--grad-clip-value-model', type=float, help='max global norm of the weight gradients')
    add('--monitor-path', '-m', default=d['monitor_path'], help='folder of monitor series and results')
    add('--model-save-interval', '-s', type=int, default=1000,
        help='iterations between checkpoints (also at every epoch end)')
    add('--model-save-path', '-o', default=None, help='folder of checkpoints (default: --monitor-path)')
    add('--model-arch-name', default=d['model_arch_name'],
        help='arch JSON to {} (or DARTS_V1/DARTS_V2 to retrain the paper\'s cells)'.format(
            'write' if script == SEARCH else 'read'))
    add('--seed', type=int, default=0, help='seed of initialisation, data order, augmentation, drop path')
    add('--dataset-path', default=None,
        help='the dataset: a CIFAR python archive (.tar.gz) or its extracted folder, the folder of SVHN\'s two '
             '.mat files, or an image folder (train/<class>/*, val/<class>/*); default: download the archive')
    add('--image-size', type=int, help='side of the square images the network is fed (image folders)')
    add('--data-workers', type=int, default=None,
        help='processes decoding image files (image folders; default: the cores of this machine, less one, '
             'shared by its mpirun processes, at most 8)')
    add('--color-jitter', type=float, nargs=4, metavar=('BRIGHTNESS', 'CONTRAST', 'SATURATION', 'HUE'),
        help='colour jitter of the training images')
    add('--train-images', type=int, default=0,
        help='use only the first N training images (0: all), for quick trials')
    add('--test-images', type=int, default=0, help='use only the first N test images (0: all)')
    add('--resume', type=boolean, default=False, const=True, nargs='?',
        help='continue from the newest checkpoint in --model-save-path')
    add('--tensorboard', default=None, metavar='DIR',
        help='also write TensorBoard event files into DIR (needs requirements-tensorboard.txt; default: none)')
    add('--tensorboard-every', type=int, default=50,
        help='iterations between the running training values in TensorBoard')
    add('--embedding-size', type=int, help='recurrent: the word embedding\'s size (tied to the decoder)')
    add('--hidden-size', type=int, help='recurrent: the cell\'s state size (equal to --embedding-size: tied weights)')
    add('--bptt', type=int, help='recurrent: the window of truncated backpropagation through time')
    add('--dropout-output', type=float, help='recurrent: locked dropout of the cell\'s outputs')
    add('--dropout-hidden', type=float, help='recurrent: variational dropout of the cell\'s state input')
    add('--dropout-x', type=float, help='recurrent: variational dropout of the cell\'s word input')
    add('--dropout-input', type=float, help='recurrent: locked dropout of the embedded words')
    add('--dropout-embedding', type=float, help='recurrent: dropout of whole words of the embedding')
    add('--tar', type=float, help='recurrent: temporal activation regularisation beta')
    if script == SEARCH:
        add('--method', default=methods.DEFAULT, choices=methods.NAMES,
            help='the search method (docs/reference.md): how the alphas mix the ops and move')
        add('--beta-decay-weight', type=float, default=None,
            help='beta-darts: the Beta-Decay weight lambda_t = this * epoch / epochs (default 25, the paper\'s)')
        add('--skip-beta', type=float, default=None,
            help='darts-minus: the auxiliary skip\'s weight at the start, decaying linearly to 0 (default 1)')
        add('--sdarts-epsilon', type=float, default=None,
            help='sdarts-rs, sdarts-adv: the perturbation bound at the end, rising linearly from 0.03 (default 0.3)')
        add('--tau-max', type=float, default=None,
            help='gdas: the Gumbel-softmax temperature at the start, falling linearly (default 10, the paper\'s)')
        add('--tau-min', type=float, default=None, help='gdas: the temperature at the last epoch (default 0.1)')
        add('--rsws-candidates', type=int, default=None,
            help='rsws: the random architectures ranked with the shared weights at every epoch\'s end (default 100)')
        add('--rsws-batches', type=int, default=None,
            help='rsws: the fixed validation batches that rank them (default 1)')
        add('--cost-weight', type=float, default=0.0,
            help='lambda of the expected multiply-adds (normalised by the largest cell\'s) in the alpha objective '
                 '(0: none; docs/reference.md)')
        add('--arch-lr', type=float, help='Adam learning rate of the alphas')
        add('--weight-decay-archs', type=float, default=1e-3, help='weight decay of the alphas')
        add('--second-order', type=boolean, default=False, help='second-order (unrolled) alpha gradient')
        add('--eta', type=float, default=None,
            help='xi of the unrolled step (default: the current weight learning rate, as in the paper)')
        add('--partial-channels', type=int, default=1,
            help='PC-DARTS: 1/K of each edge\'s channels through its mixed op (1: DARTS)')
        add('--edge-normalization', type=boolean, default=False,
            help='PC-DARTS: weigh the edges into each node by a softmax over their betas')
        add('--arch-warmup-epochs', type=int, default=0,
            help='epochs before the alphas (and betas) are first updated (PC-DARTS: 15)')
        add('--hessian-every', type=int,
            help='epochs between evaluations of the dominant Hessian eigenvalue of the alphas (0: never)')
        add('--hessian-batches', type=int, default=HESSIAN_BATCHES,
            help='fixed validation batches (no augmentation) of the Hessian eigenvalue')
        add('--early-stop', type=boolean, default=False,
            help='DARTS-ES: stop when the Hessian eigenvalue grows, keep the arch of an earlier epoch')
        add('--max-skip-connect', type=int, default=None,
            help='at most M identity ops in the derived normal cell (P-DARTS; default: no cap)')
    else:
        add('--dropout-rate', type=float, help='final drop-path probability')
        add('--label-smoothing', type=float, help='label smoothing of the training loss (main and aux heads)')
        add('--auxiliary', type=boolean, help='auxiliary head')
        add('--auxiliary-weight', type=float, default=0.4, help='weight of the auxiliary loss')
        add('--cutout', type=boolean, help='cutout augmentation')
        add('--cutout-length', type=int, default=16, help='side of the cutout square')
        add('--summary-only', type=boolean, default=False, const=True, nargs='?',
            help='print the cells and the parameter count, then exit')
        add('--eval-only', type=boolean, default=False, const=True, nargs='?',
            help='report test loss and error of --model-load-path, then exit')
        add('--model-load-path', default=None,
            help='parameters to evaluate or export: a checkpoint folder or a .h5 file')
        add('--plot', nargs='+', default=None, metavar='MONITOR_PATH',
            help='draw the learning curves of finished runs side by side into performance.png, then exit')
        add('--export-nnp', default=None,
            help='write the inference network of --model-load-path as this .nnp file, then exit')
        add('--export-onnx', default=None,
            help='write the inference network of --model-load-path as this ONNX file (opset 11, any batch '
                 'size), then exit; needs requirements-export.txt')
    args = p.parse_args(argv)
    args.search_space = resolved_space(script, args)
    for name in spaces.SPACES[args.search_space].unused_flags + RECURRENT_FLAGS:
        if getattr(args, name, None) is not None and (name not in RECURRENT_FLAGS
                                                      or args.search_space != spaces.RECURRENT):
            raise UserError('--{} means nothing on --search-space {}'.format(name.replace('_', '-'), args.search_space))
    if script == SEARCH:
        method_options(args)
    for name in RECIPE_FLAGS:
        if hasattr(args, name) and getattr(args, name) is None:
            setattr(args, name, recipe_default(script, args.dataset, args.search_space, name))
    if args.data_workers is None:
        args.data_workers = workers.default_count(parallel.launched_size())
    check(args, script)
    if args.model_save_path is None:
        args.model_save_path = args.monitor_path
    return args


def method_options(args):
    """Refuse a flag that means nothing for the method (its ``refuses``) and a method's option given to
    another method; set the method's options left out to its defaults."""
    method = methods.METHODS[args.method]
    for name, default in method.refuses.items():
        if getattr(args, name) != default:
            raise UserError('--{} means nothing with --method {}'.format(name.replace('_', '-'), args.method))
    for name in methods.OPTIONS:
        if name not in method.options and getattr(args, name) is not None:
            raise UserError('--{} means nothing with --method {}'.format(name.replace('_', '-'), args.method))
    for name, default in method.options.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if not method.updates_alphas:
        args.hessian_every = 0  # no alpha step: no eigenvalue of the alphas' Hessian


# float flags that must be finite (argparse's float() takes 'nan' and 'inf'); an infinite
# --grad-clip-value-model is allowed: it means no clipping
FINITE = ('model_lr', 'min_model_lr', 'weight_decay_model', 'arch_lr', 'weight_decay_archs', 'eta', 'dropout_rate',
          'auxiliary_weight', 'lr_gamma', 'momentum', 'label_smoothing', 'cost_weight', 'dropout_output',
          'dropout_hidden', 'dropout_x', 'dropout_input', 'dropout_embedding', 'tar') + tuple(methods.OPTIONS)


# the flags that a resumed job may set otherwise than the run it continues (docs/reliability.md): how
# many epochs it runs, where and how it computes, where its data lies, where and how often it writes
RESUMABLE = ('epoch', 'context', 'device_id', 'deterministic', 'dataset_path', 'data_workers', 'monitor_path',
             'model_save_path', 'model_save_interval', 'model_arch_name', 'resume', 'tensorboard', 'tensorboard_every')
NOT_TRAINING = ('summary_only', 'eval_only', 'model_load_path', 'plot', 'export_nnp', 'export_onnx')  # end before
# the flags that the checkpoints of earlier versions recorded only when not at these values
IMPLIED_BY_ABSENCE = dict(partial_channels=1, edge_normalization=False, dataset='cifar10', image_size=32,
                          search_space=spaces.DEFAULT, nesterov=False, method=methods.DEFAULT, cost_weight=0.0,
                          **dict.fromkeys(tuple(methods.OPTIONS) + RECURRENT_FLAGS))


def resume_config(script, args):
    """What a resumed job must share with the run it resumes (checkpoint.start checks it, in this
    order): the job, the search space, the method (the search), and every other flag but the
    RESUMABLE ones, as JSON values."""
    flags = {name: value for name, value in sorted(vars(args).items()) if name not in RESUMABLE + NOT_TRAINING}
    first = {name: flags.pop(name) for name in ('search_space', 'method') if name in flags}
    return json.loads(json.dumps(dict(job=script, **first, **flags)))


def loop_plan(args):
    """What the job's TrainingLoop runs, from the flags both jobs share."""
    lr = functools.partial(epoch_lr, args.lr_schedule, epochs=args.epoch, lr=args.model_lr, lr_min=args.min_model_lr,
                           gamma=args.lr_gamma)
    return Plan(args.epoch, lr, args.model_save_interval, args.model_save_path, args.monitor_path, args.tensorboard,
                args.tensorboard_every)


def space_of(args):
    """The search space of the run (spaces.space.Space), configured by its flags."""
    return spaces.get(args.search_space, num_nodes=args.num_nodes, benchmark_table=args.benchmark_table)


def resolved_space(script, args):
    """The search space of the run: --search-space, or the recurrent one on a text corpus, or the
    retraining's arch's own (a file that names its space, a cell string), or DARTS's; an arch of
    another space, and a text corpus in an image space or the other way round, are refused."""
    text = args.dataset in corpora.NAMES
    if args.search_space and text != (args.search_space == spaces.RECURRENT):
        raise UserError('--dataset {} is {}, and --search-space {} is for {}'.format(
            args.dataset, 'a text corpus' if text else 'images', args.search_space,
            'text corpora (ptb, text)' if not text else 'images'))
    wanted = args.search_space or (spaces.RECURRENT if text else None)
    named = None
    if script == TRAIN and not args.plot:
        try:
            named = space_named(args.model_arch_name)
        except UserError:  # an arch that cannot be read: the job refuses it when it loads it, first thing
            pass
    if wanted and spaces.SPACES[wanted].claims(args.model_arch_name):
        named = wanted  # a name that the run's space knows (DARTS_V2 is a cell of both DARTS spaces)
    if named and (wanted or spaces.DEFAULT) != named and (wanted or text or named == spaces.RECURRENT):
        raise UserError('{} is an arch of the {} space, and this run is on {}'.format(
            args.model_arch_name, spaces.SPACES[named].title, '--search-space {}'.format(wanted)
            if args.search_space else '--dataset {} (the {} space)'.format(
                args.dataset, spaces.SPACES[wanted or spaces.DEFAULT].title)))
    return wanted or named or spaces.DEFAULT


def image_size_rules(args, script):
    """The rules of --image-size: the archives' images are 32x32; the space's network must take the
    side (spaces.space.Space.image_size_rules); only the DARTS space has the ImageNet network."""
    space, imagenet = spaces.SPACES[args.search_space], datasets.imagenet_network(args.dataset, args.image_size)
    return [(args.image_size == datasets.ARRAY_SIZE or datasets.on_disk(args.dataset),
             '--image-size is for image folders: {} images are {}x{}'.format(
                 args.dataset, datasets.ARRAY_SIZE, datasets.ARRAY_SIZE)),
            (space.has_imagenet_network or not imagenet, '--search-space {} has only its CIFAR network: --dataset '
             'imagenet and --image-size above 64 are for --search-space darts'.format(space.name))] + \
        space.image_size_rules(args.image_size, imagenet, script == TRAIN and args.auxiliary)


def recurrent_rules(args, script):
    """The rules of the recurrent space's flags: positive sizes, tied weights, probabilities, and what
    it does not have yet (methods but DARTS's, PC-DARTS, half precision)."""
    rules = [(args.embedding_size > 0 and args.hidden_size > 0, '--embedding-size and --hidden-size must be positive'),
             (args.embedding_size == args.hidden_size, '--embedding-size {} and --hidden-size {} must be equal: the '
              'decoder is tied to the embedding'.format(args.embedding_size, args.hidden_size)),
             (args.bptt >= 2, '--bptt must be at least 2'),
             (args.tar >= 0, '--tar must be non-negative'),
             (args.type_config == 'float', '--type-config half is for the image spaces so far')] + [
                 (0 <= getattr(args, name) < 1, '--{} must be in [0, 1)'.format(name.replace('_', '-')))
                 for name in RECURRENT_FLAGS if name.startswith('dropout_')]
    if script == SEARCH:
        rules += [(args.method == methods.DEFAULT, '--method {} is for the image spaces: the recurrent space is '
                   'searched with darts'.format(args.method)),
                  (args.partial_channels == 1 and not args.edge_normalization,
                   '--partial-channels and --edge-normalization are for the image spaces'),
                  (args.hessian_every == 0 and not args.early_stop,
                   '--hessian-every and --early-stop are for the image spaces')]
    return rules


def check(args, script):
    """Refuse impossible values in one line, before anything is built or loaded."""
    for name in FINITE:
        value = getattr(args, name, None)
        if value is not None and not math.isfinite(value):
            raise UserError('--{} must be a finite number, got {}'.format(name.replace('_', '-'), value))
    rules = [
        (args.epoch > 0, '--epoch must be positive'),
        (args.batch_size > 0, '--batch-size must be positive'),
        (args.batch_size % parallel.launched_size() == 0, '--batch-size {} is the global batch: under mpirun it must '
         'be divisible by the {} processes'.format(args.batch_size, parallel.launched_size())),
        (args.num_cells > 0, '--num-cells must be positive'),
        (args.num_nodes >= 4, '--num-nodes must be at least 4 (two inputs, one intermediate, the output)'),
        (0 <= args.seed < 2 ** 31, '--seed must be in 0..2147483647'),
        (args.output_filter > 0 and args.output_filter % 2 == 0, '--output-filter must be positive and even'),
        (args.additional_filters_on_retrain >= 0 and args.additional_filters_on_retrain % 2 == 0,
         '--additional-filters-on-retrain must be non-negative and even'),
        (args.model_lr > 0, '--model-lr must be positive'),
        (0 <= args.min_model_lr <= args.model_lr, '--min-model-lr must be in [0, --model-lr]'),
        (args.weight_decay_model >= 0, '--weight-decay-model must be non-negative'),
        (args.grad_clip_value_model > 0, '--grad-clip-value-model must be positive'),
        (args.model_save_interval >= 0, '--model-save-interval must be non-negative (0: epoch ends only)'),
        (args.device_id >= 0, '--device-id must be non-negative'),
        (args.train_images >= 0 and args.test_images >= 0, '--train-images/--test-images must be non-negative'),
        (0 < args.lr_gamma <= 1, '--lr-gamma must be in (0, 1]'),
        (0 <= args.momentum < 1, '--momentum must be in [0, 1)'),
        (args.data_workers >= 0, '--data-workers must be non-negative (0: decode on the job\'s own thread)'),
        (args.tensorboard_every > 0, '--tensorboard-every must be positive'),
        (all(math.isfinite(v) and v >= 0 for v in args.color_jitter) and args.color_jitter[3] <= 0.5,
         '--color-jitter takes four non-negative numbers, the hue at most 0.5'),
    ] + image_size_rules(args, script)
    if script == SEARCH:
        rules += [(args.type_config == 'float', '--type-config half is for darts_train.py; the search '
                   'computes in float (its finite differences need the precision)'),
                  (args.arch_lr > 0, '--arch-lr must be positive'),
                  (args.weight_decay_archs >= 0, '--weight-decay-archs must be non-negative'),
                  (args.eta is None or args.eta >= 0, '--eta must be non-negative'),
                  (args.cost_weight >= 0, '--cost-weight must be non-negative'),
                  (args.partial_channels >= 1 and args.output_filter % args.partial_channels == 0
                   and args.output_filter // args.partial_channels >= 2,
                   '--partial-channels must be at least 1 and divide --output-filter into parts of 2 or more channels'),
                  (args.arch_warmup_epochs >= 0, '--arch-warmup-epochs must be non-negative'),
                  (args.hessian_every >= 0, '--hessian-every must be non-negative (0: never)'),
                  (args.hessian_batches > 0, '--hessian-batches must be positive'),
                  (args.hessian_every > 0 or not args.early_stop, '--early-stop needs the Hessian eigenvalue: '
                   'set --hessian-every to a positive number'),
                  skip_cap_rule(args.max_skip_connect)] + [
                      (getattr(args, name) is None or getattr(args, name) >= 0,
                       '--{} must be non-negative'.format(name.replace('_', '-'))) for name in methods.OPTIONS] + [
                      (getattr(args, name) is None or getattr(args, name) >= 1,
                       '--{} must be at least 1'.format(name.replace('_', '-'))) for name in ('rsws_candidates',
                                                                                              'rsws_batches')] + [
                      (args.tau_max is None or args.tau_min <= args.tau_max, '--tau-min must not exceed --tau-max'),
                      (args.tau_min is None or args.tau_min > 0, '--tau-min must be positive')]
    else:
        rules += [(0 <= args.dropout_rate < 1, '--dropout-rate must be in [0, 1)'),
                  (args.auxiliary_weight >= 0, '--auxiliary-weight must be non-negative'),
                  (0 < args.cutout_length <= args.image_size or not args.cutout,
                   '--cutout-length must be in 1..{} (--image-size)'.format(args.image_size)),
                  (0 <= args.label_smoothing < 1, '--label-smoothing must be in [0, 1)'),
                  (args.model_load_path or not (args.eval_only or args.export_nnp or args.export_onnx),
                   '--eval-only, --export-nnp and --export-onnx need --model-load-path')]
    if args.search_space == spaces.RECURRENT:
        rules += recurrent_rules(args, script)
    for ok, message in rules:
        if not ok:
            raise UserError(message)
    if args.tensorboard is not None and board.missing():
        raise UserError(board.missing())
