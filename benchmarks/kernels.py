"""Forward + backward time of the single functions a NAS-Bench-201 step is made of, in nnabla or in
PyTorch, on one thread: where a step's gap between the two comes from.

    .venv/bin/python benchmarks/kernels.py nnabla [--shape 64 16 32 32]
    /tmp/torchnb201/bin/python benchmarks/kernels.py torch [--shape 64 16 32 32]

Each function (3x3 and 1x1 convolution without bias, BN on the batch's statistics without affine
parameters, ReLU, 3x3 average pooling of stride 1 without the padding in the mean) runs on a
random input of --shape, and a matrix product (M x K) (K x N) of --matmul (default: the recurrent
retraining's decoder, 64 x 35 rows of 850 against 10,000 words), forward then backward with both
gradients, 3 warm-up and 10 timed runs; the median
milliseconds are printed as one JSON line. PyTorch is never imported by the project: this file
only measures it (its scratch venv: benchmarks/torch_nb201.py).
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # device.py, for nnabla's runs

FUNCTIONS = ('conv3x3', 'conv1x1', 'batch_norm', 'relu', 'avg_pool3x3', 'matmul')


def timed(run, repeats=10, warmup=3):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def nnabla_runs(shape, matmul):
    import nnabla as nn
    import nnabla.functions as F
    import nnabla.parametric_functions as PF
    from device import device_context
    nn.set_default_context(device_context('cpu', 0, 'float'))  # as the scripts set it up
    c = shape[1]
    x = nn.Variable(shape, need_grad=True)
    x.d = np.random.RandomState(0).randn(*shape)
    outputs = {
        'conv3x3': PF.convolution(x, c, (3, 3), pad=(1, 1), with_bias=False, name='c3'),
        'conv1x1': PF.convolution(x, c, (1, 1), with_bias=False, name='c1'),
        'batch_norm': PF.batch_normalization(x, batch_stat=True, fix_parameters=True, name='bn'),
        'relu': F.relu(x),
        'avg_pool3x3': F.average_pooling(x, (3, 3), (1, 1), pad=(1, 1), including_pad=False),
        'matmul': F.affine(nn.Variable.from_numpy_array(np.random.randn(*matmul[:2]), need_grad=True),
                           nn.Variable.from_numpy_array(np.random.randn(*matmul[1:]), need_grad=True)),
    }

    def run(y):
        def once():
            y.forward(clear_no_need_grad=True)
            y.backward(clear_buffer=True)
        return once
    return {name: run(y) for name, y in outputs.items()}


def torch_runs(shape, matmul):
    import torch
    import torch.nn as tnn
    torch.set_num_threads(1)
    c = shape[1]
    x = torch.randn(*shape, requires_grad=True)
    modules = {
        'conv3x3': tnn.Conv2d(c, c, 3, padding=1, bias=False),
        'conv1x1': tnn.Conv2d(c, c, 1, bias=False),
        'batch_norm': tnn.BatchNorm2d(c, affine=False, track_running_stats=False),
        'relu': tnn.ReLU(),
        'avg_pool3x3': tnn.AvgPool2d(3, 1, 1, count_include_pad=False),
    }
    a, b = (torch.randn(*dims, requires_grad=True) for dims in (matmul[:2], matmul[1:]))
    modules['matmul'] = lambda _: a @ b

    def run(m):
        def once():
            y = m(x)
            y.backward(torch.ones_like(y))
        return once
    return {name: run(m) for name, m in modules.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('framework', choices=('nnabla', 'torch'))
    p.add_argument('--shape', type=int, nargs=4, default=(64, 16, 32, 32))
    p.add_argument('--matmul', type=int, nargs=3, default=(64 * 35, 850, 10000), metavar=('M', 'K', 'N'))
    args = p.parse_args()
    runs = (nnabla_runs if args.framework == 'nnabla' else torch_runs)(tuple(args.shape), tuple(args.matmul))
    print(json.dumps(dict(framework=args.framework, shape=args.shape, matmul=args.matmul,
                          ms={name: round(timed(runs[name]), 2) for name in FUNCTIONS})))


if __name__ == '__main__':
    main()
