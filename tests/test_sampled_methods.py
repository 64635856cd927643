"""The methods that compute a drawn network alone: GDAS (its forward is the drawn ops', its alpha
gradient the Gumbel-softmax's straight-through one, against numpy's chain rule; its temperature and
draws) and random search with weight sharing (uniform architectures, only their weights trained,
the derivation the best candidate); both end to end with resume, and the flags they refuse."""
import collections
import itertools
import shutil

import numpy as np
import nnabla as nn
import pytest

import methods
import spaces
from helpers import NO_EIGENVALUE, one_line, read_series, run_cli
from methods.gdas import ALPHA_PASS, WEIGHT_PASS, drawn_rows, log_softmax
from methods.rsws import random_arch
from model_search import ALONE, graph_parameters
from test_methods import SEARCH_NB201, attached, read_json, schedule_of

SPACES = [spaces.get('nas-bench-201'), spaces.get('darts', num_nodes=4)]


def alone(graph, drawn):
    """The graph of the drawn ops computed unweighted (what GDAS's forward must equal)."""
    def mixing(alpha, table):
        return [[ALONE if k == drawn[alpha.name][e] else None for k in range(alpha.shape[1])]
                for e in range(alpha.shape[0])]
    return graph['with_mixing'](mixing)


def loss_of(graph, batch):
    graph['x'].d, graph['y'].d = batch
    graph['loss'].forward()
    return float(graph['loss'].d)


def op_of(name):
    """(cell, edge, op) scopes of a weight's name ('cell1/edge0_1/op2/conv/W'), () for no op's."""
    return tuple(p for p in name.split('/') if p.startswith(('cell', 'edge', 'op'))) if '/op' in name else ()


def weight_ops(graph):
    """{(cell, edge, op)} of the op weights a graph reads (its leaves' arrays are the parameters')."""
    names = {p.data: name for name, p in nn.get_parameters(grad_only=False).items()}
    return {op_of(names[v.data]) for v in graph_parameters(graph['loss'])['weights']} - {()}


@pytest.mark.parametrize('space', SPACES, ids=lambda s: s.name)
def test_gdas_forward_is_the_drawn_network_alone(space):
    method = methods.get('gdas', seed=2)
    graph, _, batch = attached(method, space)
    method.schedule(3, 10)
    drawn_graph = method.drawn_graph(5, WEIGHT_PASS)
    _, drawn = method.draw(5, WEIGHT_PASS)
    reference = alone(graph, drawn)
    assert loss_of(drawn_graph, batch) == pytest.approx(loss_of(reference, batch), rel=1e-6)
    assert weight_ops(drawn_graph) == weight_ops(reference) < weight_ops(graph)


def straight_through(alpha, gumbel, tau, dh):
    """dL/dalpha of h = one_hot - p + stop(p), p = softmax((log softmax(alpha) + gumbel) / tau), for
    dL/dh = ``dh``, by the chain rule written out."""
    p = np.exp((log_softmax(alpha) + gumbel) / tau)
    p /= p.sum(axis=1, keepdims=True)
    dz = p * (dh - (dh * p).sum(axis=1, keepdims=True))
    s = np.exp(log_softmax(alpha))
    return (dz - s * dz.sum(axis=1, keepdims=True)) / tau


def hard_weight_gradient(graph, drawn, batch):
    """dL/dh at h = one_hot for the drawn network (the drawn op weighted, the others added as scalars),
    h a leaf Variable: the gradient that the straight-through estimator passes on."""
    leaves = {}

    def mixing(alpha, table):
        h = nn.Variable(alpha.shape, need_grad=True)
        h.data.zero()
        h.d[np.arange(alpha.shape[0]), drawn[alpha.name]] = 1
        h.grad.zero()
        leaves[alpha.name] = h
        return drawn_rows(h, drawn[alpha.name])
    g = graph['with_mixing'](mixing)
    g['x'].d, g['y'].d = batch
    g['loss'].forward()
    g['loss'].backward()
    return {name: h.g.copy() for name, h in leaves.items()}


@pytest.mark.parametrize('space', SPACES, ids=lambda s: s.name)
def test_gdas_alpha_gradient_is_the_straight_through_one(space):
    method = methods.get('gdas', seed=1)
    graph, solvers, batch = attached(method, space)
    method.schedule(2, 5)  # tau = 10 - 9.9 * 2 / 4
    gumbels, drawn = method.draw(4, ALPHA_PASS)
    dh = hard_weight_gradient(graph, drawn, batch)
    for a in graph['alphas'].values():
        a.grad.zero()
    method.alpha_gradient(batch, batch, 4)
    largest = 0
    for name, a in graph['alphas'].items():
        short = name.split('/')[-1]
        expected = straight_through(a.d.astype(np.float64), gumbels[short], 5.05, dh[short])
        assert np.allclose(a.g, expected, rtol=1e-4, atol=1e-7), name
        largest = max(largest, np.abs(expected).max())
    assert largest > 1e-4


def test_gdas_temperature_falls_linearly_from_10_to_0_1_and_draws_repeat():
    method = methods.get('gdas', seed=3)
    attached(method, spaces.get('nas-bench-201'))
    taus = schedule_of(method, lambda: method.tau, 5)
    assert taus == pytest.approx([10, 7.525, 5.05, 2.575, 0.1])
    assert method.draw(7, WEIGHT_PASS)[1] == method.draw(7, WEIGHT_PASS)[1]
    draws = {method.draw(i, p)[1]['alpha_cell'] for i in range(4) for p in (WEIGHT_PASS, ALPHA_PASS)}
    assert len(draws) == 8


def test_gdas_draws_follow_the_alphas():
    method = methods.get('gdas', seed=0)
    graph, _, _ = attached(method, spaces.get('nas-bench-201'))
    alpha = graph['alphas']['alpha/alpha_cell']
    alpha.d = np.log([[0.7, 0.1, 0.1, 0.05, 0.05]] * 6)
    counts = collections.Counter(k for i in range(400) for k in method.draw(i, WEIGHT_PASS)[1]['alpha_cell'])
    assert counts[0] / 2400 == pytest.approx(0.7, abs=0.03) and counts[3] / 2400 == pytest.approx(0.05, abs=0.015)


def test_rsws_draws_nas_bench_201_ops_and_darts_pairs_uniformly():
    space, rng = spaces.get('nas-bench-201'), np.random.RandomState(0)
    ops = collections.Counter(op for _ in range(2000) for op in space.arch_ops(
        random_arch(space, {'alpha_cell': (6, 5)}, rng))['alpha_cell'])
    for e, k in itertools.product(range(6), range(5)):
        assert ops[(e, k)] / 2000 == pytest.approx(0.2, abs=0.035)
    space = spaces.get('darts')  # 7 nodes: 14 edges, node 5 on rows 9..13
    shapes = {'alpha_normal': (14, 8), 'alpha_reduction': (14, 8)}
    archs = [space.arch_ops(random_arch(space, shapes, rng))['alpha_normal'] for _ in range(3000)]
    node5 = collections.Counter(tuple(sorted(e for e, _ in a if e >= 9)) for a in archs)  # node 5: rows 9..13
    assert len(node5) == 10 and min(node5.values()) / 3000 > 0.1 - 0.025
    op_counts = collections.Counter(k for a in archs for _, k in a)
    assert set(op_counts) == set(range(7)) and min(op_counts.values()) / max(op_counts.values()) > 0.9


@pytest.mark.parametrize('space', SPACES, ids=lambda s: s.name)
def test_rsws_trains_the_drawn_architecture_alone_and_derives_the_best_candidate(space):
    method = methods.get('rsws', seed=5, rsws_candidates=6, rsws_batches=1)
    graph, solvers, batch = attached(method, space)
    shapes = {n.split('/')[-1]: a.shape for n, a in graph['alphas'].items()}
    arch = random_arch(space, shapes, np.random.RandomState([5, 3, 8]))
    method.weight_gradient(batch, 3)
    trained = {op_of(k) for k, v in graph['weights'].items() if np.abs(v.g).sum() > 0} - {()}
    drawn = method.arch_graph(arch)
    assert trained and trained <= weight_ops(drawn) < weight_ops(graph)
    method.rank_on([batch])
    rng = np.random.RandomState([5, 9])
    candidates = [random_arch(space, shapes, rng) for _ in range(6)]
    scores = []
    for c in candidates:
        g = method.arch_graph(c)
        g['x'].d, g['y'].d = batch
        nn.forward_all([g['loss'], g['err']])
        scores.append((float(g['err'].d), float(g['loss'].d)))
    assert method.derive(space, {}) == candidates[min(range(6), key=lambda i: scores[i])]
    assert method.updates_alphas is False
    scored, score = [], method.score
    method.score = lambda a: scored.append(a) or score(a)
    method.derive(space, {})
    assert scored == []  # the same weights: the last ranking is kept
    method.weight_gradient(batch, 4)
    method.derive(space, {})
    assert len(scored) == 6


@pytest.mark.parametrize('flags, fragment', [
    (['--method', 'rsws', '--second-order', 'True'], '--second-order means nothing with --method rsws'),
    (['--method', 'rsws', '--cost-weight', '1'], '--cost-weight means nothing with --method rsws'),
    (['--method', 'gdas', '--partial-channels', '2'], '--partial-channels means nothing with --method gdas'),
    (['--method', 'gdas', '--second-order', 'True'], '--second-order means nothing with --method gdas'),
    (['--method', 'gdas', '--tau-min', '2', '--tau-max', '1'], '--tau-min must not exceed --tau-max'),
    (['--method', 'gdas', '--tau-min', '0'], '--tau-min must be positive'),
    (['--method', 'rsws', '--rsws-candidates', '0'], '--rsws-candidates must be at least 1'),
    (['--method', 'rsws', '--rsws-batches', '50'], '--rsws-batches 50 of --batch-size 4 need more than'),
    (['--tau-max', '3'], '--tau-max means nothing with --method darts'),
])
def test_sampled_methods_refuse_in_one_line(archive, tmp_path, flags, fragment):
    res = run_cli('darts_search.py', SEARCH_NB201 + ['--dataset-path', archive, '-m', tmp_path / 'm',
                                                     '--model-arch-name', tmp_path / 'a.json'] + flags)
    one_line(res, fragment)
    assert not (tmp_path / 'm' / 'checkpoint_1').exists()


@pytest.mark.parametrize('method, space_flags', [
    ('gdas', []), ('rsws', []),
    ('gdas', ['--search-space', 'darts', '--num-nodes', '4']), ('rsws', ['--search-space', 'darts', '--num-nodes', '4'])])
def test_a_sampled_search_runs_and_resumes_to_the_same_end(archive, tmp_path, method, space_flags):
    base = SEARCH_NB201 if not space_flags else ['-c', 'cpu', '--num-cells', '2', '--output-filter', '4', '-b', '4']

    def search(name, *extra):
        folder = tmp_path / name
        return run_cli('darts_search.py', base + space_flags + [
            '--method', method, '--dataset-path', archive, '-e', '2', '-s', '3', '-m', folder,
            '--model-arch-name', folder / 'arch.json', *NO_EIGENVALUE, *extra]
            + (['--rsws-candidates', '3'] if method == 'rsws' else [])), folder

    res, a = search('run')
    assert res.returncode == 0, res.stderr
    assert methods.METHODS[method].title + (', first order' if method == 'gdas' else ', no alpha step') in res.stdout
    if method == 'gdas':
        assert [v for _, v in read_series(a, 'GDAS-temperature')] == ['10', '0.1']
    b = tmp_path / 'resumed'
    shutil.copytree(str(a), str(b))
    shutil.rmtree(str(sorted(b.glob('checkpoint_*'))[-1]))
    (b / 'arch.json').unlink()
    again, _ = search('resumed', '--resume', 'True')
    assert again.returncode == 0, again.stderr
    assert read_json(a / 'arch.json') == read_json(b / 'arch.json')
    assert (a / 'Training-loss.series.txt').read_text() == (b / 'Training-loss.series.txt').read_text()
