"""--cost-weight: the supernet's multiply-adds per edge and op against a count by hand, the derived
network's against model_eval's count of the built network, the penalty's gradient against
numpy's formula, the refusal of a negative weight and a search that logs its cost."""
import numpy as np
import nnabla as nn
import nnabla.solvers as S
import pytest

import genotype
import methods
import spaces
from helpers import NO_EIGENVALUE, one_line, read_series, run_cli
from methods.cost import CostPenalty, op_costs
from model_eval import multiply_adds
from model_search import forward_backward, search_graph
from spaces.space import Net
from tasks.classification import CIFAR10

MIXED = '|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|'
SEARCH_NB201 = ['-c', 'cpu', '--search-space', 'nas-bench-201', '--num-cells', '1', '--output-filter', '4', '-b', '4']


def supernet_graph(space, C, cells, **options):
    nn.clear_parameters()
    return search_graph(space, Net(C, cells, CIFAR10, **options), 2)


def test_nas_bench_201_edge_costs_are_the_hand_counted_ones():
    C, N = 8, 2
    costs, skeleton = op_costs(supernet_graph(spaces.get('nas-bench-201'), C, N), spaces.get('nas-bench-201'), N)
    stages = [(32 // 2 ** s, C * 2 ** s) for s in range(3)]  # side, channels
    conv3 = N * sum(side * side * c * c * 9 for side, c in stages)
    expected = np.zeros((6, 5))
    expected[:, 2], expected[:, 3] = conv3 / 9, conv3  # nor_conv_1x1, nor_conv_3x3; none, skip and pool cost 0
    assert np.array_equal(costs['alpha_cell'], expected)
    blocks = sum((side // 2) ** 2 * (2 * c) * (9 * c + 9 * 2 * c + c) for side, c in stages[:2])
    assert skeleton == 32 * 32 * C * 27 + blocks + 4 * C * 10


@pytest.mark.parametrize('name, arch', [('nas-bench-201', MIXED), ('nas-bench-201', 'all 3x3'),
                                        ('darts', 'DARTS_V2'), ('darts', 'DARTS_V1')])
def test_the_derived_network_s_multiply_adds_are_the_built_network_s(name, arch):
    space = spaces.get(name)
    if arch == 'all 3x3':
        arch = '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|'
    arch = genotype.load(arch, space)
    C, cells = 4, 3
    graph = supernet_graph(space, C, cells)
    penalty = CostPenalty(graph, space, cells, 1.0)
    nn.clear_parameters()
    logits, _ = space.network(nn.Variable((2, 3, 32, 32)), arch, Net(C, cells, CIFAR10), test=True)
    assert penalty.of(arch, space) == multiply_adds(logits)


@pytest.mark.parametrize('name', ['nas-bench-201', 'darts'])
def test_the_penalty_s_gradient_is_lambda_over_m_times_numpy_s(name):
    space = spaces.get(name, num_nodes=4) if name == 'darts' else spaces.get(name)
    graph = supernet_graph(space, 2, 3 if name == 'darts' else 1, edge_normalization=True)
    rng = np.random.RandomState(1)
    for a in graph['alphas'].values():
        a.d = rng.randn(*a.shape)
    solver = S.Adam(3e-4)
    solver.set_parameters(graph['alphas'])
    batch = (rng.randn(2, 3, 32, 32).astype(np.float32), rng.randint(0, 10, (2, 1)))
    forward_backward(graph, batch, {'alphas': solver})
    of_the_loss = {k: a.g.copy() for k, a in graph['alphas'].items()}
    penalty = CostPenalty(graph, space, 3 if name == 'darts' else 1, 0.7)
    derived = space.derive({k.split('/')[-1]: a.d for k, a in graph['alphas'].items()})
    before = penalty.epoch_values(derived, space)['Expected multiply-adds']  # no alpha step yet (a warm-up)
    penalty.add_gradient()
    largest = sum(c.max(axis=1).sum() for c in penalty.costs.values())
    expected_cost = penalty.skeleton
    for full, a in graph['alphas'].items():
        short = full.split('/')[-1]
        if short not in penalty.costs:  # a beta: no cost
            assert np.array_equal(a.g, of_the_loss[full])
            continue
        c = penalty.costs[short]
        p = np.exp(a.d - a.d.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = 0.7 / largest * p * (c - (p * c).sum(axis=1, keepdims=True))
        assert np.allclose(a.g - of_the_loss[full], grad, rtol=1e-4, atol=1e-9), short
        expected_cost += (p * c).sum()
    assert penalty.epoch_values(derived, space)['Expected multiply-adds'] == pytest.approx(expected_cost, rel=1e-5, abs=1)
    assert before == penalty.epoch_values(derived, space)['Expected multiply-adds']


def test_drnas_s_penalty_weighs_the_costs_by_the_dirichlet_mean():
    space = spaces.get('nas-bench-201')
    graph = supernet_graph(space, 2, 1)
    alpha = graph['alphas']['alpha/alpha_cell']
    alpha.d = np.random.RandomState(2).randn(*alpha.shape)
    alpha.grad.zero()
    penalty = CostPenalty(graph, space, 1, 0.3, methods.get('drnas').mean_weights)
    penalty.add_gradient()
    c, a = penalty.costs['alpha_cell'], alpha.d.astype(np.float64)
    beta, dbeta = np.where(a > 0, a + 1, np.exp(a)), np.where(a > 0, 1.0, np.exp(a))
    mean = beta / beta.sum(axis=1, keepdims=True)
    grad = 0.3 / c.max(axis=1).sum() * (c - (mean * c).sum(axis=1, keepdims=True)) / beta.sum(axis=1, keepdims=True)
    assert np.allclose(alpha.g, grad * dbeta, rtol=1e-4, atol=1e-9)
    derived = space.derive({'alpha_cell': a})
    assert penalty.epoch_values(derived, space)['Expected multiply-adds'] == pytest.approx(
        penalty.skeleton + (mean * c).sum(), rel=1e-5)


def test_a_search_with_a_cost_logs_the_derived_cell_s_multiply_adds(archive, tmp_path):
    folder = tmp_path / 'm'
    res = run_cli('darts_search.py', SEARCH_NB201 + ['--dataset-path', archive, '-e', '1', '-m', folder,
                                                     '--model-arch-name', folder / 'arch.json', *NO_EIGENVALUE,
                                                     '--method', 'beta-darts', '--cost-weight', '0.5'])
    assert res.returncode == 0, res.stderr
    space = spaces.get('nas-bench-201')
    arch = genotype.load(str(folder / 'arch.json'), space)
    nn.clear_parameters()
    logits, _ = space.network(nn.Variable((1, 3, 32, 32)), arch, Net(4, 1, CIFAR10), test=True)
    logged = [tuple(p) for p in read_series(folder, 'Multiply-adds-of-the-derived-cell')]
    assert logged == [('1', str(multiply_adds(logits)))]
    assert 'multiply-adds of the derived cell' in res.stdout
    for bad, fragment in (('-1', '--cost-weight must be non-negative'), ('inf', '--cost-weight must be a finite')):
        one_line(run_cli('darts_search.py', SEARCH_NB201 + ['-m', tmp_path / bad, '--cost-weight', bad]), fragment)
    assert methods.DEFAULT == 'darts'
