"""Every nnabla function that a step of the project calls has a GPU implementation in
nnabla-ext-cuda120 1.39.0 (tests/data/gpu_functions.json, written by benchmarks/gpu_functions.py):
a function without one runs on the CPU under --context cudnn, with the arrays copied to the host
and back at every call.

The steps run here on the CPU, on tiny networks, inside the context that --context cudnn gives
(nnabla builds the functions with its backend list and falls back to the CPU for lack of the
extension); a function hook records every function call with the context it was built in, so
each is checked for the type config (float or half) it would run in on the GPU.
"""
import json
import os

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S
import pytest

import darts_search
import darts_train
import genotype
import model_eval
import operations
import recurrent
from args import SEARCH, TRAIN, parse, space_of
from helpers import ROOT
from spaces.darts_rnn.graph import carried
from tasks.classification import CIFAR10, Data

TABLE = json.load(open(os.path.join(ROOT, 'tests', 'data', 'gpu_functions.json')))
BATCH = 2


def cudnn_context(type_config):
    """The context of nnabla_ext.cudnn.context(type_config=...) (nnabla-ext-cuda 1.39), built
    without the extension: the backends in the order nnabla tries them."""
    backends = {'float': ['cudnn:float', 'cuda:float', 'cpu:float'],
                'half': ['cudnn:half', 'cudnn:float', 'cuda:half', 'cuda:float', 'cpu:float']}[type_config]
    return nn.Context(backends, 'CudaCachedArray', device_id='0')


def type_config(f):
    """The type config a function built in a cudnn context runs in: its first backend's."""
    return f.context.backend[0].split(':')[1]


class Calls:
    """(function type, type config) of every nnabla function called (forward or backward) inside."""

    def __init__(self):
        self.seen = set()

    def __enter__(self):
        nn.set_function_pre_hook('coverage', lambda f: self.seen.add((f.info.type_name, type_config(f))))
        return self

    def __exit__(self, *exc):
        nn.unset_function_pre_hook('coverage')


def without_gpu(calls):
    """The calls whose function has no cuda or cudnn implementation for their type config."""
    return sorted('{} ({})'.format(name, t) for name, t in calls
                  if not {'cuda:' + t, 'cudnn:' + t} & set(TABLE['functions'].get(name, ())))


def assert_on_gpu(calls):
    missing = without_gpu(calls)
    assert not missing, 'no GPU implementation in {}: {}'.format(TABLE['extension'], ', '.join(missing))


def images(data=CIFAR10):
    rng = np.random.RandomState(0)
    return rng.randn(BATCH, 3, data.size, data.size).astype(np.float32), rng.randint(0, data.classes, (BATCH, 1))


IMAGENET = Data(224, 20, True)  # the ImageNet network at the smallest size its aux head takes


@pytest.fixture(autouse=True)
def fresh_parameters():
    nn.clear_parameters()
    yield
    nn.clear_parameters()


@pytest.fixture
def solvers(monkeypatch):
    """The names of the nnabla solvers created while the test runs (the jobs', the clip's and the
    Unroller's kernels)."""
    created = set()
    for name in ('Sgd', 'Momentum', 'Adam', 'Nesterov', 'AdamW', 'SgdW', 'RMSprop', 'Adagrad'):
        def make(*args, _make=getattr(S, name), **kwargs):
            solver = _make(*args, **kwargs)
            created.add(solver.name)
            return solver
        monkeypatch.setattr(S, name, make)
    return created


DARTS_CELL = ('--num-cells', '3', '--num-nodes', '4')
NB201 = ('--search-space', 'nas-bench-201', '--num-cells', '1')
NB201_CELL = '|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|'


def search_calls(second_order, options=DARTS_CELL, data=CIFAR10):
    """Two steps of darts_search.py's step (alpha step, clip, weight step), with the space's and
    PC-DARTS's ``options``."""
    args = parse(SEARCH, ['--output-filter', '2', '--batch-size', str(BATCH), '--second-order', str(second_order),
                          *options])
    with nn.context_scope(cudnn_context('float')):
        step = darts_search.setup(args, space_of(args), data)[1]
        with Calls() as calls:
            for _ in range(2):
                step(images(data), images(data))
    return calls.seen


TRAIN_FLAGS = ['--model-arch-name', 'DARTS_V2', '--num-cells', '3', '--output-filter', '4', '-f', '0',
               '--batch-size', str(BATCH), '--auxiliary', 'True']


def train_calls(type_config, options=(), data=CIFAR10):
    """Two retraining steps (aux head, drop path, clip, update), the test graph's forward and the
    forward of the .nnp export's graph (batch size 1), all in ``type_config``."""
    args = parse(TRAIN, TRAIN_FLAGS + ['--type-config', type_config, *options])
    space = space_of(args)
    arch = genotype.load(args.model_arch_name, space)
    net = darts_train.network_of(args, data)
    with nn.context_scope(cudnn_context(type_config)):
        _, _, _, step = darts_train.setup(space, arch, args, data)
        test, export = model_eval.build_test(space, arch, net, BATCH), model_eval.build_test(space, arch, net, 1)
        with Calls() as calls:
            for it in range(2):
                step(images(data), it, 0.2)
            test['x'].d, test['y'].d = images(data)
            nn.forward_all([test[name] for name in ('loss', 'err', 'err5') if name in test])
            export['x'].d = images(data)[0][:1]
            export['logits'].forward()
    return calls.seen


PC_DARTS = ('--output-filter', '4', '--partial-channels', '2', '--edge-normalization', 'True')


@pytest.mark.parametrize('second_order, options, data', [
    (False, DARTS_CELL, CIFAR10), (True, DARTS_CELL, CIFAR10), (False, DARTS_CELL + PC_DARTS, CIFAR10),
    (False, DARTS_CELL, Data(64, 12, True)), (False, NB201, CIFAR10), (True, NB201 + PC_DARTS, CIFAR10)],
    ids=['first-order', 'second-order', 'pc-darts', 'imagenet-stem', 'nas-bench-201', 'nas-bench-201-2nd-pc'])
def test_every_function_of_the_search_runs_on_the_gpu(second_order, options, data, solvers):
    calls = search_calls(second_order, options, data)
    assert ('Convolution', 'float') in calls and ('BatchNormalization', 'float') in calls
    assert_on_gpu(calls)
    sgd = 'Nesterov' if 'nas-bench-201' in options else 'Momentum'  # its recipe's SGD
    assert solvers == ({sgd, 'Adam', 'Sgd'} if second_order else {sgd, 'Adam'})
    assert all('cuda:float' in TABLE['solvers'][name] for name in solvers)


NB201_TRAIN = ('--model-arch-name', NB201_CELL, '--num-cells', '1', '--auxiliary', 'True', '--dropout-rate', '0.2')


@pytest.mark.parametrize('type_config, options, data', [
    ('float', (), CIFAR10), ('half', (), CIFAR10),
    ('float', ('--label-smoothing', '0.1'), IMAGENET), ('half', ('--label-smoothing', '0.1'), IMAGENET),
    ('float', NB201_TRAIN, CIFAR10), ('half', NB201_TRAIN, CIFAR10)],
    ids=['float', 'half', 'imagenet-float', 'imagenet-half', 'nas-bench-201-float', 'nas-bench-201-half'])
def test_every_function_of_retraining_evaluation_and_export_runs_on_the_gpu(type_config, options, data, solvers):
    calls = train_calls(type_config, options, data)
    if data.imagenet:  # label smoothing, the top-5 error
        assert ('LogSoftmax', 'float') in calls and ('TopNError', 'float') in calls
    sgd = 'Nesterov' if NB201_CELL in options else 'Momentum'
    assert solvers == {sgd} and 'cuda:float' in TABLE['solvers'][sgd]  # float master weights
    assert ('Convolution', type_config) in calls and ('SoftmaxCrossEntropy', 'float') in calls  # always float
    if NB201_CELL not in options:
        assert ('DepthwiseConvolution', 'float') in calls
    assert_on_gpu(calls)


RECURRENT = ['--dataset', 'ptb', '--embedding-size', '4', '--hidden-size', '4', '--batch-size', str(BATCH),
             '--bptt', '3']


def windows(names, vocabulary=7):
    rng = np.random.RandomState(0)
    return [(rng.randint(0, vocabulary, (3, BATCH)), rng.randint(0, vocabulary, (3, BATCH)),
             np.zeros((BATCH, 4), np.float32), carried(name, BATCH, 4)) for name in names]


@pytest.mark.parametrize('second_order', [False, True], ids=['first-order', 'second-order'])
def test_every_function_of_the_recurrent_jobs_runs_on_the_gpu(second_order, solvers):
    """Two search steps and an evaluation of the supernet language model, then two retraining steps
    with NT-ASGD's averaging and an evaluation of DARTS_V2's."""
    stream = np.random.RandomState(1).randint(0, 7, (7, 2))
    with nn.context_scope(cudnn_context('float')):
        _, _, evaluate, step = recurrent.search_setup(parse(SEARCH, RECURRENT + ['--second-order', str(second_order)]), 7)
        with Calls() as calls:
            for it in range(2):
                step(*windows(('train', 'valid')), it)
            evaluate(stream)
        nn.clear_parameters()
        args = parse(TRAIN, RECURRENT + ['--model-arch-name', 'DARTS_V2'])
        _, _, _, evaluate, step = recurrent.train_setup(args, genotype.load('DARTS_V2', space_of(args)), 7)
        with Calls() as retraining:
            for it in range(2):
                step(windows(('train',))[0], it, True)
            evaluate(stream)
    calls, retraining = calls.seen, retraining.seen
    assert {('Gather', 'float'), ('BatchNormalization', 'float'), ('Mul2', 'float')} <= calls
    assert ('BatchMatmul', 'float') in calls and ('Gather', 'float') in retraining
    assert_on_gpu(calls | retraining)
    assert solvers == ({'Momentum', 'Adam', 'Sgd'})  # the weights', the alphas', the unroller's or the averages'
    assert all('cuda:float' in TABLE['solvers'][name] for name in solvers)


def test_a_function_without_a_gpu_implementation_is_named(monkeypatch):
    """The check fails, naming it, when a graph uses F.global_average_pooling (no GPU implementation in
    nnabla-ext-cuda 1.39), e.g. as the classifier's pooling."""
    monkeypatch.setattr(operations, 'global_average_pool', lambda h: F.global_average_pooling(h))
    assert without_gpu(train_calls('float')) == ['GlobalAveragePooling (float)']


def test_the_table_is_the_extensions():
    assert TABLE['extension'] == 'nnabla-ext-cuda120 1.39.0'
    functions = TABLE['functions']
    assert 'cudnn:float' in functions['Convolution'] and 'GlobalAveragePooling' not in functions
