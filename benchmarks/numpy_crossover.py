"""Where numpy_functions' forms start to pay: forward + backward time of each function, nnabla's
and numpy's, at sizes around numpy_functions' thresholds (MIN_WORK: values, a product's
multiply-adds), on the CPU context the scripts set up.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/numpy_crossover.py [--repeats 30]

Rows of 850 values (the paper's recurrent width); an elementwise function on R rows times R x 850
values, a product (R x 850) (850 x 850) R x 850 x 850 multiply-adds. Prints one JSON line per
function and size: the median microseconds of both forms and their ratio.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnabla as nn  # noqa: E402
import nnabla.functions as F  # noqa: E402

import numpy_functions as N  # noqa: E402
from device import device_context  # noqa: E402

WIDTH = 850
ROWS = (1, 2, 4, 8, 16, 32, 64, 128)


def forms(name, rows, rng):
    """(nnabla's output, numpy's output) of function ``name`` on ``rows`` rows of WIDTH values."""
    ctx = nn.get_current_context()
    x = nn.Variable.from_numpy_array(rng.randn(rows, WIDTH).astype(np.float32), need_grad=True)
    if name == 'multiply':
        y = nn.Variable.from_numpy_array(rng.randn(rows, WIDTH).astype(np.float32), need_grad=True)
        return F.mul2(x, y), N.NumpyMultiply(ctx)(x, y)
    if name == 'tanh':
        return F.tanh(x), N.NumpyTanh(ctx)(x)
    if name == 'product':
        w = nn.Variable.from_numpy_array(rng.randn(WIDTH, WIDTH).astype(np.float32), need_grad=True)
        return F.affine(x, w), N.NumpyProduct(ctx, False)(x, w)
    labels = nn.Variable.from_numpy_array(rng.randint(0, WIDTH, (rows, 1)))
    return F.softmax_cross_entropy(x, labels), N.NumpySoftmaxCrossEntropy(ctx)(x, labels)


def microseconds(output, repeats):
    """Median microseconds of a forward and a backward of ``output``'s graph."""
    times = []
    for _ in range(repeats + 3):
        start = time.perf_counter()
        output.forward()
        output.backward()
        times.append(time.perf_counter() - start)
    return 1e6 * statistics.median(times[3:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=30, help='timed passes of each form')
    args = parser.parse_args()
    nn.set_default_context(device_context('cpu', 0, 'float'))
    rng = np.random.RandomState(0)
    for name in ('multiply', 'tanh', 'softmax_cross_entropy', 'product'):
        for rows in ROWS:
            nnabla_s, numpy_s = (microseconds(o, args.repeats) for o in forms(name, rows, rng))
            work = rows * WIDTH * (WIDTH if name == 'product' else 1)
            print(json.dumps(dict(function=name, rows=rows, work=work, nnabla_us=round(nnabla_s, 1),
                                  numpy_us=round(numpy_s, 1), ratio=round(nnabla_s / numpy_s, 2))), flush=True)


if __name__ == '__main__':
    main()
