"""The cost of the Hessian eigenvalue of darts_search.py against the epoch it follows; one JSON line.

    python benchmarks/hessian_cost.py --num-cells 8 --output-filter 16 --batch-size 64 --steps 3 \\
        --steps-per-epoch 390 --hessian-batches 2

Times the search step (alpha step + weight step, the script's own ``setup()``) and the alpha
gradient of one validation batch, the unit of the eigenvalue: a Lanczos iteration (one
Hessian-vector product) takes two alpha gradients (the central difference) per batch of
``--hessian-batches``. The eigenvalue's cost is given for the worst case
(``hessian.MAX_ITERATIONS`` iterations) and for ``--iterations`` (the number a real search
needed, from its ``Hessian-vector-products`` series), as a fraction of
an epoch of ``--steps-per-epoch`` steps (390 at the paper's size: 25,000 images, batch 64).
"""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnabla as nn  # noqa: E402

import darts_search  # noqa: E402
import hessian  # noqa: E402
from args import SEARCH, parse, space_of  # noqa: E402
from bench import measure, synthetic_batches  # noqa: E402
from data_iterator import network_input  # noqa: E402
from device import device_context  # noqa: E402
from errors import run  # noqa: E402
from numerics import set_momentum_lr  # noqa: E402


def median_seconds(work, repeats):
    """Median wall time of ``work()`` over ``repeats`` calls after one untimed call (bench.measure)."""
    return statistics.median(measure(lambda it: work(), repeats, 1, False)[0])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    own = argparse.ArgumentParser(prog='hessian_cost.py', description=__doc__.split('\n')[0])
    own.add_argument('--steps', type=int, default=3, help='timed repetitions of each measure (median)')
    own.add_argument('--steps-per-epoch', type=int, default=390, help='search steps of an epoch')
    own.add_argument('--iterations', type=float, default=None, help='Hessian-vector products actually needed')
    bench, rest = own.parse_known_args(argv)
    args = parse(SEARCH, ['--context', 'cpu'] + rest)
    nn.set_default_context(device_context(args.context, args.device_id, args.type_config))
    nn.seed(args.seed)
    data = network_input(args.dataset, args.dataset_path, args.image_size)
    solvers, step, graph = darts_search.setup(args, space_of(args), data)[:3]
    alphas = graph['alphas']
    set_momentum_lr(solvers['weights'], args.model_lr)
    batches = [synthetic_batches(args, data, s) for s in (0, 1)]
    try:
        batch = batches[1].next()
        step_s = median_seconds(lambda: step(batches[0].next(), batches[1].next()), bench.steps)
        grad_s = median_seconds(lambda: hessian.alpha_gradient(graph, alphas, solvers['alphas'], [batch]),
                                bench.steps)
    finally:
        for b in batches:
            b.close()
    epoch_s = step_s * bench.steps_per_epoch
    per_iteration = 2 * args.hessian_batches * grad_s
    result = dict(C=args.output_filter, L=args.num_cells, batch=args.batch_size, hessian_batches=args.hessian_batches,
                  step_s=round(step_s, 4), alpha_gradient_s=round(grad_s, 4), epoch_s=round(epoch_s, 3),
                  product_s=round(per_iteration, 4),
                  worst_case_share=round(hessian.MAX_ITERATIONS * per_iteration / epoch_s, 4))
    if bench.iterations:
        result['share_at_{}_iterations'.format(bench.iterations)] = round(bench.iterations * per_iteration / epoch_s, 4)
    print(json.dumps(result))
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
