"""What tests/test_parallel.py runs under ``mpirun -n 2`` and alone: tiny networks, synthetic data,
one .npz or .json of results per rank in the folder named last.

    python tests/parallel_worker.py steps train|search|search2|pc|nb201 OUT   # 3 steps; every parameter
    python tests/parallel_worker.py grads OUT                        # one backward, reduced
    python tests/parallel_worker.py evaluate OUT                     # the test loss and error

Alone, ``grads`` computes both halves of the batch one after the other in this one process and
saves the mean of their gradients: what two ranks must reduce to.
"""
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import nnabla as nn  # noqa: E402

import darts_search  # noqa: E402
import darts_train  # noqa: E402
import genotype  # noqa: E402
import hessian  # noqa: E402
import parallel  # noqa: E402
from args import SEARCH, TRAIN, parse, space_of  # noqa: E402
from data_iterator import eval_batches  # noqa: E402
from datasets import Split  # noqa: E402
from helpers import cifar_recipe, eval_graph, train_graph  # noqa: E402
from device import device_context  # noqa: E402
from loop import InterruptFlag  # noqa: E402
from numerics import set_momentum_lr  # noqa: E402
from tasks.classification import CIFAR10, evaluate as evaluate_test  # noqa: E402

BATCH = 4
TRAIN_FLAGS = ['-c', 'cpu', '--num-cells', '3', '--output-filter', '4', '-f', '0', '-b', str(BATCH),
               '--model-arch-name', 'DARTS_V2']
SEARCH_FLAGS = ['-c', 'cpu', '--num-cells', '2', '--output-filter', '4', '--num-nodes', '4', '-b', str(BATCH)]
NB201_FLAGS = ['-c', 'cpu', '--search-space', 'nas-bench-201', '--num-cells', '1', '--output-filter', '4', '-b',
               str(BATCH)]  # second order with Nesterov momentum, PC-DARTS's options


def images(n, seed):
    """``n`` normalised-looking random images and labels (the same in every process)."""
    rng = np.random.RandomState(seed)
    return rng.randn(n, 3, 32, 32).astype(np.float32), rng.randint(0, 10, (n, 1)).astype(np.int32)


def start():
    world = parallel.start('cpu')
    nn.set_default_context(device_context('cpu', 0, 'float'))
    nn.seed(0)
    return world


def steps(kind):
    """Three steps of the retraining or of the search (first order, second order, PC-DARTS's first
    order followed by the Hessian eigenvalue on a probe batch sharded as darts_search.py does, or
    β-DARTS, SDARTS-RS or -ADV, DrNAS, GDAS or RSWS on NAS-Bench-201 at epoch 5 of 50: a regulariser
    of weight 2.5, perturbations of the weight steps within 0.057, Dirichlet draws in both steps, drawn
    networks)."""
    if kind == 'train':
        args = parse(TRAIN, TRAIN_FLAGS)
        _, solver, _, step = darts_train.setup(space_of(args), genotype.load('DARTS_V2'), args, CIFAR10)
        set_momentum_lr(solver, args.model_lr)
        return [step(parallel.world().shard(images(BATCH, it)), it, 0.2) for it in range(3)]
    pc = ['--partial-channels', '2', '--edge-normalization', 'True'] if kind in ('pc', 'nb201') else []
    named = {'beta': 'beta-darts', 'sdarts': 'sdarts-rs', 'adv': 'sdarts-adv', 'drnas': 'drnas', 'gdas': 'gdas',
             'rsws': 'rsws'}
    cells = NB201_FLAGS if kind in ('nb201', *named) else SEARCH_FLAGS
    method = ['--method', named[kind]] if kind in named else []
    args = parse(SEARCH, cells + pc + method + ['--second-order', str(kind in ('search2', 'nb201'))])
    solvers, step, graph = darts_search.setup(args, space_of(args))[:3]
    alphas = graph['alphas']
    set_momentum_lr(solvers['weights'], args.model_lr)
    shard = parallel.world().shard
    values = [step(shard(images(BATCH, it)), shard(images(BATCH, 100 + it)), True, 5, it) for it in range(3)]
    if kind in ('pc', 'nb201'):
        probe = [shard(images(BATCH, 200))]
        values.append(hessian.dominant_eigenvalue(graph, alphas, solvers['alphas'], probe, iterations=5))
    return values


def grads():
    """The weight gradients of one batch at drop-path 0.2, averaged over its two halves."""
    world = parallel.world()
    args = parse(TRAIN, TRAIN_FLAGS)
    train = train_graph(args, BATCH // 2)[2]
    params = nn.get_parameters(grad_only=True)
    reduce = parallel.grad_reducer(params)
    halves = [world.rank] if world.size == 2 else [0, 1]
    total = {k: 0.0 for k in params}
    for half in halves:
        train['x'].d, train['y'].d = (a[half * BATCH // 2:(half + 1) * BATCH // 2] for a in images(BATCH, 7))
        train['drop_path'].refresh(np.random.RandomState([0, 3, 0]), 0.2, half, 2)
        nn.forward_all([train['loss']], clear_no_need_grad=True)
        for p in params.values():
            p.grad.zero()
        train['loss'].backward(clear_buffer=True)
        if reduce:
            reduce()
        total = {k: total[k] + p.g for k, p in params.items()}
    return {k: (t / len(halves)).astype(np.float32) for k, t in total.items()}


def evaluate():
    """Test loss and error of the initial parameters on 11 images in batches of 4."""
    args = parse(TRAIN, TRAIN_FLAGS)
    world = parallel.world()
    test = eval_graph(args, BATCH // world.size)
    x, y = images(11, 3)
    pixels = np.clip(x * 60 + 128, 0, 255).astype(np.uint8)  # eval_batches normalises uint8 images
    batches = eval_batches(Split(y[:, 0], pixels), cifar_recipe(augment=False), BATCH, world.rank, world.size)
    with InterruptFlag() as interrupts:
        values = evaluate_test(test, batches, 11, interrupts)
    return {'loss': values['Test loss'], 'error': values['Test error']}


def main():
    mode, out = sys.argv[1], sys.argv[-1]
    world = start()
    os.makedirs(out, exist_ok=True)
    name = os.path.join(out, 'rank{}of{}'.format(world.rank, world.size))
    if mode == 'steps':
        values = steps(sys.argv[2])
        np.savez(name + '.npz', **{k: p.d for k, p in nn.get_parameters(grad_only=False).items()})
        with open(name + '.json', 'w') as f:
            json.dump(dict(values=values, mpi4py_imported='mpi4py' in sys.modules), f)
    elif mode == 'grads':
        np.savez(name + '.npz', **grads())
    else:
        with open(name + '.json', 'w') as f:
            json.dump(evaluate(), f)


if __name__ == '__main__':
    main()
