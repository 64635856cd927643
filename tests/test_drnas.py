"""DrNAS (--method drnas): the Gamma CDF against closed forms and its pathwise derivative against
finite differences of the inverse CDF; the Dirichlet mixing weights and their alpha gradient
against numpy's chain rule; the draws' seeds; the derivation from the Dirichlet mean; the refusal
of --second-order; a tiny search on the DARTS space end to end."""
import json
import math

import numpy as np
import nnabla as nn
import nnabla.functions as F
import pytest

import genotype
import methods
import operations
import spaces
from args import SEARCH, parse
from helpers import SEARCH_TINY, one_line, read_series, run_cli
from methods import gamma
from methods.drnas import ALPHA_DRAW, WEIGHT_DRAW
from model_search import forward_backward
from spaces.nas_bench_201 import arch as cell_string
from test_methods import SEARCH_NB201, attached, values_of


def test_the_gamma_cdf_is_its_closed_forms():
    x = np.array([1e-3, 0.2, 0.9, 1.4, 2.0, 2.6, 4.0, 9.0, 30.0])  # both sides of a + 1
    assert np.allclose(gamma.cdf(1.0, x), 1 - np.exp(-x), rtol=1e-13, atol=1e-15)
    assert np.allclose(gamma.cdf(2.0, x), 1 - (1 + x) * np.exp(-x), rtol=1e-12, atol=1e-15)
    erf = np.array([math.erf(math.sqrt(v)) for v in x])
    assert np.allclose(gamma.cdf(0.5, x), erf, rtol=1e-13, atol=1e-15)  # P(1/2, x) = erf(sqrt x)


def inverse_cdf(a, u):
    """z with P(a, z) = u, by bisection on log z."""
    lo, hi = -800.0, math.log(a + 40 * math.sqrt(a) + 40)
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gamma.cdf(a, math.exp(mid)) < u else (lo, mid)
    return math.exp((lo + hi) / 2)


@pytest.mark.parametrize('a, u', [(0.05, 0.3), (0.3, 0.2), (0.3, 0.9), (1.0, 0.5), (2.5, 0.1), (7.0, 0.5),
                                  (7.0, 0.97), (40.0, 0.3)])
def test_the_pathwise_derivative_is_the_inverse_cdf_s_finite_difference(a, u):
    h = 1e-4 * a
    moved = (inverse_cdf(a + h, u) - inverse_cdf(a - h, u)) / (2 * h)
    z = inverse_cdf(a, u)
    assert gamma.rate(np.array([a]), np.array([z]))[0] == pytest.approx(moved, rel=1e-5)


def test_gamma_draws_have_mean_beta_and_a_tiny_beta_stays_finite():
    rng = np.random.RandomState(0)
    for beta in (0.05, 0.5, 1.0, 3.0, 8.0):
        z = np.exp(gamma.log_draw(rng, np.full(20000, beta)))
        assert abs(z.mean() - beta) < 4 * math.sqrt(beta / 20000), beta
    log_z = gamma.log_draw(rng, np.full(10, 1e-3))  # some z underflow to 0, their logs do not
    assert (np.exp(log_z) == 0).any() and np.isfinite(log_z).all()
    assert np.isfinite(gamma.log_rate(np.full(10, 1e-3), log_z)).all()


def elu_plus_one(alpha):
    return np.where(alpha > 0, alpha + 1, np.exp(np.minimum(alpha, 0)))


def test_the_mixing_weights_are_the_draw_normalised_and_their_gradient_is_numpy_s_chain_rule():
    table, rng = operations.NAS_BENCH_201, np.random.RandomState(1)
    nn.clear_parameters()
    alpha = nn.Variable((6, 5), need_grad=True)
    alpha.d = rng.randn(6, 5)
    method = methods.get('drnas')
    rows = method.mixing(alpha, table)
    _, z, rate = method.draws[0]
    z.d, rate.d = rng.uniform(0.1, 1.0, (6, 5)), rng.randn(6, 5)  # a fixed draw and its dz/dbeta
    theta = z.d / z.d.sum(axis=1, keepdims=True)
    assert all(row[table.zero] is None for row in rows)
    assert np.allclose(values_of(rows, (6, 5)), theta * (np.arange(5) != table.zero), rtol=1e-6)
    c = rng.randn(6, 5)
    f = F.add_n(*[F.mul_scalar(w, c[e, k]) for e, row in enumerate(rows) for k, w in enumerate(row) if w is not None])
    alpha.grad.zero()
    f.forward()
    f.backward()
    c[:, table.zero] = 0  # the zero op's weight is not in the graph
    total = z.d.sum(axis=1, keepdims=True)
    dtheta = (c - (c * theta).sum(axis=1, keepdims=True)) / total  # d f / d z_k = (c_k - sum_j c_j theta_j) / sum z
    expected = dtheta * rate.d * np.where(alpha.d > 0, 1.0, np.exp(alpha.d))
    assert np.allclose(alpha.g, expected, rtol=1e-4, atol=1e-6)


def numpy_dirichlet(seed, iteration, draw, alpha):
    """theta = z / sum(z) of Gamma(beta) draws written out: Gamma(beta + 1) times U^(1/beta)."""
    rng, beta = np.random.RandomState([seed, iteration, draw]), elu_plus_one(alpha.astype(np.float64))
    z = rng.gamma(beta + 1) * (1 - rng.random_sample(beta.shape)) ** (1 / beta)
    return z / z.sum(axis=1, keepdims=True)


def test_each_pass_draws_afresh_from_the_seed_the_iteration_and_the_pass():
    method = methods.get('drnas', seed=5)
    graph, solvers, batch = attached(method, spaces.get('nas-bench-201'))
    alpha, z, rate = method.draws[0]

    def mixing_after(call):  # the graph's mixing weights are z / sum(z) (the test above)
        call()
        return z.d / z.d.sum(axis=1, keepdims=True)

    seen = {}
    for iteration in (3, 4):
        seen['alpha', iteration] = mixing_after(lambda: method.alpha_gradient(batch, batch, iteration))
        seen['weight', iteration] = mixing_after(lambda: method.weight_gradient(batch, iteration))
        for name, draw in (('alpha', ALPHA_DRAW), ('weight', WEIGHT_DRAW)):
            expected = numpy_dirichlet(5, iteration, draw, alpha.d)
            assert np.allclose(seen[name, iteration], expected, rtol=1e-5, atol=1e-7), (name, iteration)
    values = list(seen.values())
    assert all(not np.allclose(v, w) for i, v in enumerate(values) for w in values[i + 1:])
    assert np.array_equal(mixing_after(lambda: method.weight_gradient(batch, 3)), seen['weight', 3])
    assert np.abs(rate.d).max() > 0


def test_the_alpha_gradient_is_the_first_order_one_at_the_alpha_pass_s_draw():
    method = methods.get('drnas', seed=2)
    graph, solvers, batch = attached(method, spaces.get('darts', num_nodes=4), edge_normalization=True)
    valid = method.alpha_gradient(batch, batch, 9)
    got = {k: a.g.copy() for k, a in graph['alphas'].items()}
    assert forward_backward(graph, batch, {'alphas': solvers['alphas']}) == valid  # the same draw, still there
    for k, a in graph['alphas'].items():
        assert np.array_equal(got[k], a.g), k
    assert np.abs(got['alpha/alpha_reduction']).max() > 0  # the supernet's one cell is a reduction cell
    solvers['alphas'].zero_grad()
    graph['loss'].forward()  # no buffer cleared: the unlinked beta is read before beta's buffer goes
    graph['loss'].backward()
    assert float(graph['loss'].d) == valid[0]
    for k, a in graph['alphas'].items():
        assert np.allclose(got[k], a.g, rtol=1e-5, atol=1e-9), k


def test_the_concentration_logged_is_the_mean_over_edges_of_sum_beta():
    method = methods.get('drnas')
    graph, _, _ = attached(method, spaces.get('darts', num_nodes=4))
    totals = [elu_plus_one(a.d.astype(np.float64)).sum(axis=1) for _, a in sorted(graph['alphas'].items())]
    assert method.epoch_values() == {'DrNAS concentration': pytest.approx(np.concatenate(totals).mean(), rel=1e-12)}


def test_the_derivation_is_the_dirichlet_mean_s():
    space, method = spaces.get('nas-bench-201'), methods.get('drnas')
    skip, ops = space.op_labels.index('skip_connect'), len(space.op_labels)
    alpha = np.random.RandomState(3).uniform(-2, -1, (6, ops))
    alpha[0], alpha[0, skip] = 9.0, 10.0       # skip: softmax 0.405, Dirichlet mean 11 / 51 = 0.216
    alpha[1], alpha[1, skip] = -0.3, 0.2       # skip: softmax 0.292, Dirichlet mean 1.2 / 4.16 = 0.288
    alpha[np.arange(2, 6), [0, 2, 3, 4]] = 0.5  # the other edges' best ops
    beta = elu_plus_one(alpha)
    mean = beta / beta.sum(axis=1, keepdims=True)
    arrays = {space.alpha_names[0]: alpha.astype(np.float32)}
    assert method.derive(space, arrays) == space.arch_of(cell_string.to_string([cell_string.OPS[k]
                                                                                 for k in mean.argmax(axis=1)]))
    capped = method.derive(space, arrays, max_skip_connect=1)['arch'].split('+')[0]
    assert 'skip_connect' not in capped  # edge 0's skip is the weaker by the mean (by the softmax: edge 1's)
    assert 'skip_connect' in space.derive(arrays, max_skip_connect=1)['arch'].split('+')[0]


def test_second_order_is_refused_in_one_line(tmp_path):
    res = run_cli('darts_search.py', SEARCH_NB201 + ['--method', 'drnas', '--second-order', 'True',
                                                     '-m', tmp_path / 'm', '--model-arch-name', tmp_path / 'a.json'])
    one_line(res, '--second-order means nothing with --method drnas')
    assert not (tmp_path / 'm').exists()
    assert parse(SEARCH, ['--method', 'drnas', '--second-order', 'False']).second_order is False
    assert parse(SEARCH, ['--second-order', 'True']).second_order is True


def test_a_tiny_search_in_the_darts_space_derives_from_the_dirichlet_mean(archive, tmp_path):
    folder = tmp_path / 'run'
    res = run_cli('darts_search.py', SEARCH_TINY + ['--method', 'drnas', '--dataset-path', archive, '-e', '1', '-m',
                                                    folder, '--model-arch-name', folder / 'arch.json'])
    assert res.returncode == 0, res.stderr
    assert 'DrNAS (Chen et al., ICLR 2021), first order' in res.stdout
    space = spaces.get('darts', num_nodes=5)
    with open(str(folder / 'alphas.json')) as f:
        alphas = {k: np.array(v, np.float32) for k, v in json.load(f).items()}
    assert genotype.load(str(folder / 'arch.json'), space) == methods.get('drnas').derive(space, alphas)
    (_, concentration), = read_series(folder, 'DrNAS-concentration')
    assert float(concentration) == pytest.approx(8, abs=0.1)  # 8 ops of beta about 1
    (_, eigenvalue), = read_series(folder, 'Hessian-eigenvalue')
    assert math.isfinite(float(eigenvalue))
