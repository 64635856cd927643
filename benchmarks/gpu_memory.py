"""GPU memory that the graphs of the paper's configurations need, computed from their buffers
without running them (the graphs are only built, on the CPU): one JSON line per configuration.

    python benchmarks/gpu_memory.py

For each graph: ``parameters_mb`` (weights, their gradients and solver state, float),
``activations_mb`` (every function output of the forward, all kept for the backward; reshapes,
done in place, count nothing) and ``activation_grads_mb`` (their gradients; nnabla frees buffers
as the backward goes, so the peak lies between ``low_mb`` = parameters + activations and
``high_mb`` = all three). Each
buffer counts 2 bytes where the function that makes it runs in half, else 4. cuDNN's workspace
comes on top (capped with NNABLA_CUDNN_WORKSPACE_LIMIT, in bytes).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nnabla as nn  # noqa: E402

import architect  # noqa: E402
import darts_train  # noqa: E402
import genotype  # noqa: E402
from args import TRAIN, parse  # noqa: E402

MB = 2.0 ** 20


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


def report(name, output, weights, state_per_weight):
    data, grad = buffers(output)
    params = sum(p.size for p in weights.values()) * 4 * (2 + state_per_weight)
    return dict(graph=name, parameters_mb=round(params / MB, 1), activations_mb=round(data / MB, 1),
                activation_grads_mb=round(grad / MB, 1), low_mb=round((params + data) / MB),
                high_mb=round((params + data + grad) / MB))


def main():
    nn.clear_parameters()
    with nn.context_scope(context('float')):
        graph = architect.search_graph(64, 16, 8, 7)
    print(json.dumps(dict(report('search C=16 L=8 batch 64', graph['loss'], nn.get_parameters(grad_only=True), 1),
                          note='second order: + about 8 weight-sized vectors (60 MB)')))
    for type_config in ('float', 'half'):
        nn.clear_parameters()
        args = parse(TRAIN, ['--model-arch-name', 'DARTS_V2', '--type-config', type_config])
        arch = genotype.load(args.model_arch_name, args.num_nodes)
        with nn.context_scope(context(type_config)):
            train = darts_train.build(arch, args, args.batch_size)
        print(json.dumps(report('retrain DARTS_V2 C=36 L=20 batch 96 ' + type_config, train['loss'],
                                nn.get_parameters(grad_only=True), 1)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
