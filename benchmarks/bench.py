"""Time whole steps of darts_search.py and darts_train.py on synthetic data; print one JSON line.

    python benchmarks/bench.py search --num-cells 5 --output-filter 8 --batch-size 16 --steps 4 [--second-order True]
    python benchmarks/bench.py train --model-arch-name DARTS_V2 --num-cells 8 --output-filter 8 -f 8 \\
        --batch-size 32 --steps 6
    python benchmarks/bench.py search --dataset ptb --steps 2      # the recurrent search step at 300/300, 256
    python benchmarks/bench.py train --dataset ptb --model-arch-name DARTS_V2 --steps 2   # at 850/850, 64

Any model flag of the two scripts is accepted (``--context`` defaults to cpu here). The step is
the scripts' own (``setup()`` of each script): the alpha step plus the weight step of the search;
forward, backward, clip and update of retraining, with cutout, aux head and drop path at
``--dropout-rate``. Batches come from the scripts' data iterator over random images, as in a run.
Under ``mpirun -n N`` the step is the data-parallel one (each rank its B/N rows of the global
batch; benchmarks/scaling.py compares it with one process) and rank 0 prints the line.
``functions_per_step`` is the number of nnabla function calls (forward and backward, counted
with global function hooks) in one more step run after the timed ones: on a GPU each call is at
least one kernel launch, so this is what bounds a small step there. ``--profile True`` also times
every nnabla function call inside the timed steps and reports the share of the step spent in each
kind of function.
"""
import argparse
import collections
import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnabla as nn  # noqa: E402

import corpora  # noqa: E402
import darts_search  # noqa: E402
import darts_train  # noqa: E402
import datasets  # noqa: E402
import genotype  # noqa: E402
import images  # noqa: E402
import recurrent  # noqa: E402
import spaces  # noqa: E402
from args import SEARCH, TRAIN, boolean, parse, space_of  # noqa: E402
from model_eval import count_parameters, parameter_counts  # noqa: E402
from data_iterator import network_input, training_batches  # noqa: E402
from spaces.darts_rnn.graph import carried  # noqa: E402
from device import device_context  # noqa: E402
from errors import run  # noqa: E402
from numerics import set_momentum_lr  # noqa: E402
import parallel  # noqa: E402

KERNELS = {'Convolution': 'convolution', 'DepthwiseConvolution': 'convolution', 'BatchNormalization': 'batch norm',
           'MaxPooling': 'pooling', 'AveragePooling': 'pooling', 'ReLU': 'ReLU'}
SYNTHETIC_IMAGES = 256


def synthetic_batches(args, data, stream, cutout=0):
    """This rank's batches of the scripts' iterator (the pad augmentation on its own thread) over
    random images and labels of the shape and classes of ``data`` (a tasks.classification.Data)."""
    world, rng = parallel.world(), np.random.RandomState([args.seed, stream])
    pixels = rng.randint(0, 256, (SYNTHETIC_IMAGES, 3, data.size, data.size)).astype(np.uint8)
    split = datasets.Split(rng.randint(0, data.classes, SYNTHETIC_IMAGES), pixels)
    recipe = images.Recipe(data.size, 'pad', True, cutout, images.NO_JITTER, (0.5,) * 3, (0.25,) * 3)
    return training_batches(split, recipe, args.batch_size, args.seed, stream, rank=world.rank, size=world.size)


def search_step(args):
    """The search step of darts_search.py and the supernet's weight count."""
    data = network_input(args.dataset, args.dataset_path, args.image_size)
    solvers, step, graph = darts_search.setup(args, space_of(args), data)[:3]
    set_momentum_lr(solvers['weights'], args.model_lr)
    batches = [synthetic_batches(args, data, s) for s in (0, 1)]
    return (lambda it: step(batches[0].next(), batches[1].next())), count_parameters(graph['weights']), batches


def train_step(args):
    """The retraining step of darts_train.py and the network's parameter count (aux head excluded)."""
    space = space_of(args)
    arch = genotype.load(args.model_arch_name, space)
    data = network_input(args.dataset, args.dataset_path, args.image_size)
    params, solver, _, step = darts_train.setup(space, arch, args, data)
    set_momentum_lr(solver, args.model_lr)
    batches = [synthetic_batches(args, data, 0, args.cutout_length if args.cutout else 0)]
    return (lambda it: step(batches[0].next(), it, args.dropout_rate)), parameter_counts(params)[0], batches


class Tokens:
    """Random windows of a 10,000-word vocabulary (Penn Treebank's), with their stream's carried state."""

    def __init__(self, args, name, seed):
        self.rng, self.args = np.random.RandomState(seed), args
        self.state = carried(name, args.batch_size, args.hidden_size)

    def next(self):
        x, y = (self.rng.randint(0, corpora.PTB_WORDS, (self.args.bptt, self.args.batch_size)) for _ in range(2))
        return x, y, self.state.d.copy(), self.state

    def close(self):
        pass


def recurrent_search_step(args):
    """The recurrent search step (recurrent.search_setup) and the supernet's weight count."""
    graph, _, _, step = recurrent.search_setup(args, corpora.PTB_WORDS)
    windows = [Tokens(args, name, s) for s, name in enumerate(('train', 'valid'))]
    return (lambda it: step(windows[0].next(), windows[1].next(), it)), count_parameters(graph['weights']), windows


def recurrent_train_step(args):
    """The recurrent retraining step (recurrent.train_setup) and the model's parameter count."""
    arch = genotype.load(args.model_arch_name, space_of(args))
    params, _, _, _, step = recurrent.train_setup(args, arch, corpora.PTB_WORDS)
    windows = [Tokens(args, 'train', 0)]
    return (lambda it: step(windows[0].next(), it)), count_parameters(params), windows


class FunctionTimer:
    """Wall time of every nnabla function call (forward and backward), by function type."""

    def __init__(self):
        self.seconds, self.started = collections.Counter(), None

    def __enter__(self):
        nn.set_function_pre_hook('bench', self.pre)
        nn.set_function_post_hook('bench', self.post)
        return self

    def __exit__(self, *exc):
        nn.unset_function_pre_hook('bench')
        nn.unset_function_post_hook('bench')

    def pre(self, f):
        self.started = time.perf_counter()

    def post(self, f):
        self.seconds[self.kind(f)] += time.perf_counter() - self.started

    @staticmethod
    def kind(f):
        """The function's type; scalar-only arithmetic (gradient norm, loss means) grouped apart."""
        name = f.info.type_name
        if name not in KERNELS and all(len(v.shape) <= 1 for v in f.inputs):
            return 'scalar arithmetic'
        return name


def count_functions(step, it):
    """The number of nnabla function calls (forward and backward) in ``step(it)``."""
    calls = []
    nn.set_function_pre_hook('bench_count', lambda f: calls.append(None))
    try:
        step(it)
    finally:
        nn.unset_function_pre_hook('bench_count')
    return len(calls)


def measure(step, steps, warmup, profile):
    """Per-step wall times after ``warmup`` untimed steps, and the function timer's totals."""
    for it in range(warmup):
        step(it)
    times, timer = [], FunctionTimer()
    for it in range(warmup, warmup + steps):
        start = time.perf_counter()
        if profile:
            with timer:
                step(it)
        else:
            step(it)
        times.append(time.perf_counter() - start)
    return times, timer.seconds


def shares(seconds, total):
    """Shares of the step time: per kernel kind (convolution, batch norm, pooling, ReLU), their
    sum, every other function type, and the time outside nnabla functions."""
    kinds = collections.Counter()
    for name, t in seconds.items():
        kinds[KERNELS.get(name, name)] += t
    out = {k: round(v / total, 4) for k, v in kinds.most_common()}
    out['kernels'] = round(sum(kinds[k] for k in set(KERNELS.values())) / total, 4)
    out['other functions'] = round(sum(v for k, v in kinds.items() if k not in KERNELS.values()) / total, 4)
    out['outside functions (solvers, Python, data wait)'] = round(1 - sum(seconds.values()) / total, 4)
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    own = argparse.ArgumentParser(prog='bench.py', description=__doc__.split('\n')[0])
    own.add_argument('mode', choices=(SEARCH, TRAIN))
    own.add_argument('--steps', type=int, default=4, help='timed steps (the median is reported)')
    own.add_argument('--warmup', type=int, default=1, help='untimed steps first')
    own.add_argument('--profile', type=boolean, default=False, help='time every nnabla function call too')
    bench, rest = own.parse_known_args(argv)
    args = parse(bench.mode, ['--context', 'cpu'] + rest)
    world = parallel.start(args.context)
    nn.set_default_context(device_context(args.context, world.device_id(args.device_id), args.type_config,
                                          args.deterministic))
    nn.seed(args.seed)
    if args.search_space == spaces.RECURRENT:
        step, parameters, data = (recurrent_search_step if bench.mode == SEARCH else recurrent_train_step)(args)
    else:
        step, parameters, data = (search_step if bench.mode == SEARCH else train_step)(args)
    try:
        times, seconds = measure(step, bench.steps, bench.warmup, bench.profile)
        functions = count_functions(step, bench.warmup + bench.steps)
    finally:
        for d in data:
            d.close()
    seconds_per_step = float(np.median(times))
    result = dict(mode=bench.mode, context=args.context, batch_size=args.batch_size,
                  sec_per_step=round(seconds_per_step, 4), functions_per_step=functions,
                  step_times=[round(t, 4) for t in times],
                  peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  parameters=parameters, nnabla=nn.__version__, processes=world.size)
    if bench.mode == SEARCH:
        result['second_order'] = args.second_order
    if args.search_space == spaces.RECURRENT:
        result.update(embedding=args.embedding_size, hidden=args.hidden_size, bptt=args.bptt,
                      tokens_per_sec=round(args.batch_size * args.bptt / seconds_per_step, 1))
    else:
        result.update(num_cells=args.num_cells, images_per_sec=round(args.batch_size / seconds_per_step, 2),
                      channels=args.output_filter + (args.additional_filters_on_retrain if bench.mode == TRAIN else 0))
    if bench.profile:
        result['profile'] = shares(seconds, sum(times))
    world.say(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
