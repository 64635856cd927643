"""The method seam (--method): DARTS through it is the search it was; β-DARTS's alpha gradient is the
loss's plus its regulariser's (against numpy's own formula); DARTS-'s mixing weights and its
auxiliary skip; the schedules, series and resume of both, and the refusals of options that mean
nothing for the chosen method."""
import json
import shutil

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S
import pytest

import methods
import operations
import spaces
from methods import sdarts
from args import SEARCH, parse
from helpers import NO_EIGENVALUE, one_line, read_series, run_cli
from model_search import edge_slices, forward_backward, search_graph
from spaces.space import Net
from tasks.classification import CIFAR10

SEARCH_NB201 = ['-c', 'cpu', '--search-space', 'nas-bench-201', '--num-cells', '1', '--output-filter', '4', '-b', '4']


def attached(method, space, seed=0, **options):
    """``method`` on a tiny supernet of ``space`` with random alphas, and a batch."""
    nn.clear_parameters()
    nn.seed(seed)
    rng = np.random.RandomState(seed)
    graph = search_graph(space, Net(2, 1, CIFAR10, mixing=method.mixing, **options), 2)
    for a in graph['alphas'].values():
        a.d = rng.randn(*a.shape)
    solvers = {'weights': S.Momentum(0.05, 0.9), 'alphas': S.Adam(3e-4, 0.5, 0.999)}
    for group, solver in solvers.items():
        solver.set_parameters(graph[group])
    method.attach(graph, solvers)
    batch = (rng.randn(2, 3, 32, 32).astype(np.float32), rng.randint(0, 10, (2, 1)))
    return graph, solvers, batch


def numpy_beta_decay_gradient(alpha):
    """d/d alpha of the mean over rows of log sum_k exp(alpha_rk): each row's softmax / rows."""
    e = np.exp(alpha - alpha.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True) / alpha.shape[0]


@pytest.mark.parametrize('space, options', [(spaces.get('nas-bench-201'), {}),
                                            (spaces.get('darts', num_nodes=4), {'edge_normalization': True})])
def test_beta_darts_gradient_is_the_loss_s_plus_lambda_times_the_softmax_over_rows(space, options):
    method = methods.get('beta-darts', beta_decay_weight=25.0)
    graph, solvers, batch = attached(method, space, **options)
    method.schedule(3, 10)  # lambda = 25 * 3 / 10
    loss = forward_backward(graph, batch, {'alphas': solvers['alphas']})
    of_the_loss = {k: a.g.copy() for k, a in graph['alphas'].items()}
    assert method.alpha_gradient(batch, batch, 0) == loss
    for name, a in graph['alphas'].items():
        expected = of_the_loss[name]
        if name.split('/')[-1].startswith('alpha_'):  # the betas of edge normalisation are not regularised
            expected = expected + 7.5 * numpy_beta_decay_gradient(a.d)
        assert np.allclose(a.g, expected, rtol=1e-5, atol=1e-6), name
    alphas = [a.d for k, a in sorted(graph['alphas'].items()) if k.split('/')[-1].startswith('alpha_')]
    lse = sum(np.mean(np.log(np.exp(d).sum(axis=1))) for d in alphas)
    assert method.epoch_values() == pytest.approx({'Beta-decay weight': 7.5, 'Beta-decay term': 7.5 * lse}, rel=1e-5)


def test_beta_darts_weight_rises_linearly_from_zero():
    method = methods.get('beta-darts', beta_decay_weight=25.0)
    attached(method, spaces.get('nas-bench-201'))
    weights = schedule_of(method, lambda: float(method.weight.d), 50)
    assert weights == pytest.approx([0.5 * e for e in range(50)])  # the paper's code: 0 + 50 * epoch / 100


def test_darts_through_the_seam_is_the_first_order_gradient_of_the_loss():
    method = methods.get('darts')
    graph, solvers, batch = attached(method, spaces.get('nas-bench-201'))
    valid = method.alpha_gradient(batch, batch, 0)
    got = {k: a.g.copy() for k, a in graph['alphas'].items()}
    assert forward_backward(graph, batch, {'alphas': solvers['alphas']}) == valid
    for k, a in graph['alphas'].items():
        assert np.array_equal(got[k], a.g)


def softmax(alpha):
    e = np.exp(alpha - alpha.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize('name', ['nas-bench-201', 'darts'])
def test_darts_minus_mixes_softmax_plus_beta_on_the_skip_connection(name):
    space = spaces.get(name)
    method = methods.get('darts-minus', skip_beta=1.0)
    graph, _, _ = attached(method, space)
    method.schedule(2, 8)  # beta = 1 - 2 / 8
    for full, a in graph['alphas'].items():
        table = operations.NAS_BENCH_201 if name == 'nas-bench-201' else operations.DARTS
        weights = method.mixing(a, table)
        expected = softmax(a.d)
        expected[:, table.identity] += 0.75
        for e, row in enumerate(weights):
            for k, w in enumerate(row):
                if k == table.zero:
                    assert w is None
                    continue
                w.forward()
                assert w.d.item() == pytest.approx(expected[e, k], rel=1e-6), (full, e, k)
    assert method.epoch_values() == {'Auxiliary skip weight': 0.75}


def test_darts_minus_adds_beta_times_the_input_to_every_edge_and_is_darts_at_zero():
    """On NAS-Bench-201 (skip_connect the identity on every edge): the loss at beta 0 is DARTS's on
    the same parameters, and at beta > 0 it is another."""
    space = spaces.get('nas-bench-201')
    darts = methods.get('darts')
    graph, solvers, batch = attached(darts, space)
    plain = forward_backward(graph, batch, {'alphas': solvers['alphas']})[0]
    saved = {k: v.d.copy() for k, v in nn.get_parameters(grad_only=False).items()}
    minus = methods.get('darts-minus', skip_beta=1.0)
    graph, solvers, _ = attached(minus, space)
    for k, v in nn.get_parameters(grad_only=False).items():
        v.d = saved[k]
    minus.schedule(4, 4)  # beta = 0
    assert forward_backward(graph, batch, {'alphas': solvers['alphas']})[0] == pytest.approx(plain, rel=1e-6)
    minus.schedule(0, 4)
    assert forward_backward(graph, batch, {'alphas': solvers['alphas']})[0] != pytest.approx(plain, rel=1e-3)


def values_of(rows, shape):
    """The mixing weights ``rows`` (a method's mixing of an alpha) as an array (0 for the zero op)."""
    out = np.zeros(shape)
    for e, row in enumerate(rows):
        for k, w in enumerate(row):
            if w is not None:
                w.forward()
                out[e, k] = w.d.item()
    return out


def numpy_clip(w):
    """The paper code's clip of perturbed weights, row by row: clamp to [0, 1], the largest to 1 if
    all clamp to 0, divide by the sum."""
    out = []
    for row in w:
        top, row = row.argmax(), np.clip(row, 0, 1)
        if row.sum() == 0:
            row[top] = 1
        out.append(row / row.sum())
    return np.array(out)


def test_sdarts_clip_is_the_paper_code_s():
    w = np.array([[0.5, -0.2, 0.9], [-0.1, -0.3, -0.05], [1.4, 0.2, 0.0]])
    assert np.allclose(sdarts.clip_rows(w.copy()), numpy_clip(w))
    assert np.allclose(sdarts.clip_rows(w.copy())[1], [0, 0, 1])


class Catcher:
    """Stands for the weights' solver: the mixing weights of ``rows`` at the moment the weight step
    zeroes its gradients (after its forward)."""

    def __init__(self, solver, rows, shape):
        self.solver, self.rows, self.shape, self.seen = solver, rows, shape, []

    def zero_grad(self):
        self.seen.append(values_of(self.rows, self.shape))
        self.solver.zero_grad()


def weights_in_the_weight_step(method, graph, batch, iteration):
    """The mixing weights the weight step of ``iteration`` computed with, caught in its pass."""
    solvers = method.solvers
    catcher = Catcher(solvers['weights'], method.rows, graph['alphas']['alpha/alpha_cell'].shape)
    method.solvers = dict(solvers, weights=catcher)
    try:
        method.weight_gradient(batch, iteration)
    finally:
        method.solvers = solvers
    return catcher.seen[-1]


def sdarts_on_nas_bench_201(name, seed):
    """An SDARTS method on a tiny NAS-Bench-201 supernet: (method, graph, batch, the alpha, its delta),
    with ``method.rows`` mixing weights of the alpha that read the same delta as the graph's."""
    method = methods.get(name, seed=seed, sdarts_epsilon=0.3)
    graph, _, batch = attached(method, spaces.get('nas-bench-201'))
    alpha = graph['alphas']['alpha/alpha_cell']
    delta = method.perturbed[0][1]
    method.rows = edge_slices(F.add2(F.softmax(alpha, axis=1), delta), operations.NAS_BENCH_201)
    return method, graph, batch, alpha, delta


def schedule_of(method, value, epochs):
    """``value()`` after the method's schedule of each epoch of ``epochs``."""
    values = []
    for epoch in range(epochs):
        method.schedule(epoch, epochs)
        values.append(value())
    return values


def test_sdarts_rs_perturbs_the_weight_step_alone_within_epsilon_and_clipped():
    table = operations.NAS_BENCH_201
    method, graph, batch, alpha, delta = sdarts_on_nas_bench_201('sdarts-rs', 4)
    rows = method.rows
    clean = softmax(alpha.d)
    method.schedule(25, 50)  # eps = 0.03 + 0.27 / 2
    assert method.epsilon == pytest.approx(0.165)
    perturbed = weights_in_the_weight_step(method, graph, batch, 7)
    noise = np.random.RandomState([4, 7, 5]).uniform(-0.165, 0.165, alpha.shape)
    expected = numpy_clip(clean + noise)
    expected[:, table.zero] = 0
    assert np.allclose(perturbed, expected, atol=1e-6)
    assert np.abs(perturbed - clean)[:, 1:].max() > 0.05
    after = values_of(rows, alpha.shape)
    clean[:, table.zero] = 0
    assert np.allclose(after, clean, rtol=1e-6)  # the clean softmax again after the step
    assert not np.allclose(weights_in_the_weight_step(method, graph, batch, 8), perturbed)


def numpy_pgd(method, graph, batch, iteration, loss_at, sign_at):
    """SDARTS-ADV's attack written out: random start, 7 sign steps of 2 eps / 7, each projected into
    the eps box around the clean softmax and clipped; kept only if it raised the loss."""
    eps, clean = method.epsilon, softmax(graph['alphas']['alpha/alpha_cell'].d)
    rng = np.random.RandomState([method.seed, iteration, 5])
    w = numpy_clip(clean + rng.uniform(-eps, eps, clean.shape))
    for _ in range(7):
        w = numpy_clip(clean + np.clip(w + 2 * eps / 7 * sign_at(w) - clean, -eps, eps))
    return w if loss_at(w) >= loss_at(clean) else clean


def test_sdarts_adv_weight_step_is_at_the_pgd_perturbation_that_raises_the_loss():
    table = operations.NAS_BENCH_201
    method, graph, batch, alpha, delta = sdarts_on_nas_bench_201('sdarts-adv', 3)
    method.schedule(9, 10)
    clean = softmax(alpha.d)

    def loss_at(w):
        delta.d = w - clean
        graph['x'].d, graph['y'].d = batch
        graph['loss'].forward()
        return float(graph['loss'].d)

    def gradient_at(w):  # nnabla's backward of the loss into the mixing weights
        delta.need_grad = True
        delta.grad.zero()
        loss_at(w)
        graph['loss'].backward()
        delta.need_grad = False
        return delta.g.copy()

    def finite_difference(w, h=1e-3):
        g = np.zeros_like(w)
        for idx in np.ndindex(*w.shape):
            e = np.zeros_like(w)
            e[idx] = h
            g[idx] = (loss_at(w + e) - loss_at(w - e)) / (2 * h)
        return g
    assert np.corrcoef(gradient_at(clean).ravel(), finite_difference(clean).ravel())[0, 1] > 0.99
    sign_at = lambda w: np.sign(gradient_at(w))  # noqa: E731
    expected = numpy_pgd(method, graph, batch, 2, loss_at, sign_at)
    delta.data.zero()
    got = weights_in_the_weight_step(method, graph, batch, 2)
    expected[:, table.zero] = 0
    assert np.allclose(got, expected, atol=1e-5)
    assert np.abs(got - clean * (np.arange(5) != table.zero)).max() > 0.05


@pytest.mark.parametrize('name', ['sdarts-rs', 'sdarts-adv'])
def test_sdarts_alpha_gradient_is_darts_s(name):
    method = methods.get(name, sdarts_epsilon=0.3)
    graph, solvers, batch = attached(method, spaces.get('darts'))
    method.schedule(3, 4)
    method.weight_gradient(batch, 1)
    valid = method.alpha_gradient(batch, batch, 0)
    got = {k: a.g.copy() for k, a in graph['alphas'].items()}
    darts = methods.get('darts')
    graph, solvers, batch = attached(darts, spaces.get('darts'))
    assert darts.alpha_gradient(batch, batch, 0) == pytest.approx(valid, rel=1e-6)
    for k, a in graph['alphas'].items():
        assert np.allclose(got[k], a.g, rtol=1e-5, atol=1e-8), k


def test_every_method_is_named_with_its_options():
    assert methods.NAMES == ('darts', 'beta-darts', 'darts-minus', 'sdarts-rs', 'sdarts-adv', 'drnas', 'gdas',
                             'rsws')
    assert methods.DEFAULT == 'darts'
    assert parse(SEARCH, ['--method', 'sdarts-rs']).sdarts_epsilon == 0.3
    assert parse(SEARCH, ['--method', 'sdarts-adv']).sdarts_epsilon == 0.3
    assert parse(SEARCH, ['--method', 'darts-minus']).skip_beta == 1.0
    args = parse(SEARCH, ['--method', 'beta-darts'])
    assert args.beta_decay_weight == 25.0
    assert parse(SEARCH, ['--method', 'beta-darts', '--beta-decay-weight', '5']).beta_decay_weight == 5.0
    assert parse(SEARCH, []).beta_decay_weight is None


@pytest.mark.parametrize('flags, fragment', [
    (['--beta-decay-weight', '3'], '--beta-decay-weight means nothing with --method darts'),
    (['--method', 'beta-darts', '--skip-beta', '0.5'], '--skip-beta means nothing with --method beta-darts'),
    (['--method', 'darts-minus', '--skip-beta', '-0.5'], '--skip-beta must be non-negative'),
    (['--method', 'beta-darts', '--beta-decay-weight', '-1'], '--beta-decay-weight must be non-negative'),
    (['--method', 'beta-darts', '--beta-decay-weight', 'nan'], '--beta-decay-weight must be a finite number'),
    (['--method', 'gradient-descent'], "invalid choice: 'gradient-descent'"),
])
def test_a_method_option_that_means_nothing_is_one_line(tmp_path, flags, fragment):
    res = run_cli('darts_search.py', SEARCH_NB201 + ['-m', tmp_path / 'm', '--model-arch-name', tmp_path / 'a.json']
                  + flags)
    one_line(res, fragment)
    assert not (tmp_path / 'm').exists()


def read_json(path):
    with open(str(path)) as f:
        return json.load(f)


SCHEDULES = {'beta-darts': ('Beta-decay-weight', ['0', '12.5'], '--beta-decay-weight'),
             'darts-minus': ('Auxiliary-skip-weight', ['1', '0.5'], '--skip-beta'),
             'sdarts-rs': ('SDARTS-epsilon', ['0.03', '0.165'], '--sdarts-epsilon'),
             'sdarts-adv': ('SDARTS-epsilon', ['0.03', '0.165'], '--sdarts-epsilon'),
             'drnas': ('DrNAS-concentration', None, None)}  # follows the alphas (test_drnas.py); no option


@pytest.mark.parametrize('method', sorted(SCHEDULES))
def test_a_search_logs_its_method_s_schedule_and_resumes_to_the_same_end(archive, tmp_path, method):
    series, values, option = SCHEDULES[method]

    def search(name, *extra):
        folder = tmp_path / name
        return run_cli('darts_search.py', SEARCH_NB201 + ['--method', method, '--dataset-path', archive, '-e',
                                                          '2', '-s', '3', '-m', folder, '--model-arch-name',
                                                          folder / 'arch.json', *NO_EIGENVALUE, *extra]), folder

    res, a = search('run')
    assert res.returncode == 0, res.stderr
    assert methods.METHODS[method].title + ', first order' in res.stdout
    logged = [v for _, v in read_series(a, series)]
    assert len(logged) == 2 and (values is None or logged == values)
    b = tmp_path / 'resumed'
    shutil.copytree(str(a), str(b))
    shutil.rmtree(str(sorted(b.glob('checkpoint_*'))[-1]))  # back to the mid-epoch checkpoint
    (b / 'arch.json').unlink()
    again, _ = search('resumed', '--resume', 'True')
    assert again.returncode == 0, again.stderr
    assert read_json(a / 'alphas.json') == read_json(b / 'alphas.json')
    for name in ('Training-loss', 'Validation-error', series):
        assert (a / (name + '.series.txt')).read_text() == (b / (name + '.series.txt')).read_text(), name
    if option:
        other, _ = search('resumed', '--resume', 'True', option, '0.1')
        one_line(other, option[2:].replace('-', '_'))
    darts = run_cli('darts_search.py', SEARCH_NB201 + ['--dataset-path', archive, '-e', '2', '-m', b,
                                                       '--model-arch-name', b / 'arch.json', '--resume', 'True'])
    one_line(darts, 'method')
