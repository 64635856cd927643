"""GPU memory that the graphs of the paper's configurations need, and a lower bound on their step
time on a V100, computed from their buffers without running them (the graphs are only built, on
the CPU): one JSON line per configuration.

    python benchmarks/gpu_memory.py

For each graph: ``parameters_mb`` (weights, their gradients and solver state, float),
``activations_mb`` (every function output of the forward, all kept for the backward; reshapes,
done in place, count nothing) and ``activation_grads_mb`` (their gradients; nnabla frees buffers
as the backward goes, so the peak lies between ``low_mb`` = parameters + activations and
``high_mb`` = all three). Each
buffer counts 2 bytes where the function that makes it runs in half, else 4. cuDNN's workspace
comes on top (capped with NNABLA_CUDNN_WORKSPACE_LIMIT, in bytes).

``v100_bound_ms_per_image`` is a roofline bound, not a measurement: every forward function takes
at least its arithmetic at the V100's peak (15.7 TFLOP/s in float, 31.4 in half without tensor
cores; 2 per multiply-add, 1 per output value elsewhere) or its bytes (inputs, weights and
outputs) at its memory bandwidth (900 GB/s), whichever is longer; the backward twice that; plus
4 us a kernel launch, forward and backward. A real step is slower; the images per second a data
pipeline must feed a V100 are at most ``v100_bound_images_per_s``.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import nnabla as nn  # noqa: E402

import darts_train  # noqa: E402
import genotype  # noqa: E402
import model_eval  # noqa: E402
import spaces  # noqa: E402
from args import TRAIN, parse  # noqa: E402
from model_search import search_graph  # noqa: E402
from spaces.space import Net  # noqa: E402
from tasks.classification import Data  # noqa: E402

MB = 2.0 ** 20
PEAK_FLOPS = {'float': 15.7e12, 'half': 31.4e12}  # V100 SXM2, without tensor cores
BANDWIDTH = 900e9  # V100 HBM2, bytes a second
LAUNCH = 4e-6      # seconds a kernel launch
WEIGHTED = ('Convolution', 'DepthwiseConvolution', 'Affine')


def context(type_config):
    """The backends of --context cudnn (see tests/test_gpu_coverage.py), to build with."""
    backends = ['cudnn:half', 'cudnn:float', 'cuda:half', 'cuda:float', 'cpu:float'] \
        if type_config == 'half' else ['cudnn:float', 'cuda:float', 'cpu:float']
    return nn.Context(backends, 'CudaCachedArray', device_id='0')


def buffers(output):
    """(activation bytes, activation gradient bytes) of the graph of ``output``."""
    data, grad = 0, 0

    def visit(f):
        nonlocal data, grad
        if f.info.type_name == 'Reshape':  # in place: its output shares its input's buffer
            return
        size = 2 if f.context.backend[0].endswith(':half') else 4
        for v in f.outputs:  # each function is visited once
            data += v.size * size
            grad += v.size * size if v.need_grad else 0
    output.visit(visit)
    return data, grad


def step_bound(output, type_config):
    """The roofline bound of one training step of the graph of ``output`` (see the docstring), in seconds."""
    seconds, launches = 0.0, 0

    def visit(f):
        nonlocal seconds, launches
        if f.info.type_name == 'Reshape':
            return
        size = 2 if f.context.backend[0].endswith(':half') else 4
        values = f.outputs[0].size
        flops = 2 * values * (f.inputs[1].shape[0] if f.info.type_name == 'Affine' else
                              int(np.prod(f.inputs[1].shape[1:]))) if f.info.type_name in WEIGHTED else values
        moved = size * (sum(v.size for v in f.inputs) + sum(v.size for v in f.outputs))
        seconds += 3 * max(flops / PEAK_FLOPS[type_config], moved / BANDWIDTH)  # forward, and twice for the backward
        launches += 2
    output.visit(visit)
    return seconds + launches * LAUNCH


def report(name, output, weights, state_per_weight, batch_size=None, type_config='float'):
    data, grad = buffers(output)
    params = sum(p.size for p in weights.values()) * 4 * (2 + state_per_weight)
    result = dict(graph=name, parameters_mb=round(params / MB, 1), activations_mb=round(data / MB, 1),
                  activation_grads_mb=round(grad / MB, 1), low_mb=round((params + data) / MB),
                  high_mb=round((params + data + grad) / MB))
    if batch_size:
        seconds = step_bound(output, type_config)
        result.update(v100_bound_ms_per_image=round(1000 * seconds / batch_size, 3),
                      v100_bound_images_per_s=round(batch_size / seconds))
    return result


def main():
    nn.clear_parameters()
    with nn.context_scope(context('float')):
        graph = search_graph(spaces.get('darts'), Net(16, 8, Data(32, 10, False)), 64)
    print(json.dumps(dict(report('search C=16 L=8 batch 64', graph['loss'], nn.get_parameters(grad_only=True), 1),
                          note='second order: + about 8 weight-sized vectors (60 MB)')))
    for dataset, data in (('cifar10', Data(32, 10, False)), ('imagenet', Data(224, 1000, True))):
        for type_config in ('float', 'half'):
            nn.clear_parameters()
            args = parse(TRAIN, ['--model-arch-name', 'DARTS_V2', '--type-config', type_config, '--dataset', dataset])
            space = spaces.get('darts')
            arch = genotype.load(args.model_arch_name, space)
            with nn.context_scope(context(type_config)):
                train = model_eval.build(space, arch, darts_train.network_of(args, data), args.batch_size,
                                         args.label_smoothing, args.auxiliary_weight)
            name = 'retrain DARTS_V2 {} C={} L={} batch {} {}'.format(
                dataset, darts_train.channels(args), args.num_cells, args.batch_size, type_config)
            print(json.dumps(report(name, train['loss'], nn.get_parameters(grad_only=True), 1, args.batch_size,
                                    type_config)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
