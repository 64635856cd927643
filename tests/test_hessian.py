"""The Hessian eigenvalue of the search, the DARTS-ES rule and the parameter-free op counts."""
import functools
import json

import numpy as np
import pytest
import nnabla as nn
import nnabla.functions as F

import hessian
import model_search
import numerics
import operations
from helpers import grouped_depthwise
from spaces.darts_cnn.network import supernet
from test_search import plain_mixed_op, tiny_search_setup, use_computed_parameters


def exact_alpha_hessian(alphas, batches, C=2, cells=3, nodes=4):
    """The full Hessian of the mean loss over ``batches`` w.r.t. the alphas, column by column from
    nnabla's double backward (d/da of g(a).e_i)."""
    losses = []
    for x, y in batches:
        logits = supernet(nn.Variable.from_numpy_array(x), C, cells, nodes)
        losses.append(F.mean(F.softmax_cross_entropy(logits, nn.Variable.from_numpy_array(y))))
    loss = F.add_n(*losses) / len(losses)
    params = list(alphas.values())
    grads = nn.grad([loss], params)
    probes = [nn.Variable(p.shape) for p in params]
    hv = nn.grad([F.add_n(*[F.sum(g * v) for g, v in zip(grads, probes)])], params)
    out = F.sink(*hv)
    size = sum(p.size for p in params)
    columns = []
    for i in range(size):
        basis = np.zeros(size)
        basis[i] = 1
        hessian.write_alphas({k: v for k, v in zip(range(len(probes)), probes)}, basis)
        out.forward()
        columns.append(np.concatenate([h.d.ravel() for h in hv]))
    return np.array(columns).T


def smooth_supernet(monkeypatch):
    """The tiny supernet with smooth ops (see test_finite_difference_hypergradient_matches_exact_double_backward)."""
    use_computed_parameters(monkeypatch)
    monkeypatch.setattr(F, 'relu', F.softplus)
    monkeypatch.setattr(F, 'max_pooling', F.average_pooling)
    monkeypatch.setattr(operations, 'depthwise', grouped_depthwise)
    return tiny_search_setup()


def test_eigenvalue_matches_the_exact_hessian_from_double_backward(monkeypatch):
    graph, weights, alphas, solvers, batch_a, batch_b = smooth_supernet(monkeypatch)
    batches = [batch_a, batch_b]
    stats = {k: p.d.copy() for k, p in numerics.running_statistics().items()}
    before = {k: (a.d.copy(), a.g.copy()) for k, a in alphas.items()}
    weight_grads = {k: p.g.copy() for k, p in weights.items()}
    value, iterations = hessian.dominant_eigenvalue(graph, alphas, solvers['alphas'], batches,
                                                    iterations=200, tolerance=1e-7)
    for k, a in alphas.items():  # left exactly as they were
        assert np.array_equal(a.d, before[k][0]) and np.array_equal(a.g, before[k][1]), k
    for k, p in numerics.running_statistics().items():
        assert np.array_equal(p.d, stats[k]), k
    for k, p in weights.items():  # the alpha-only backward leaves the weight gradients alone
        assert np.array_equal(p.g, weight_grads[k]), k
    monkeypatch.setattr(model_search, 'mixed_op', plain_mixed_op)
    H = exact_alpha_hessian(alphas, batches)
    assert np.allclose(H, H.T, atol=1e-4 * np.abs(H).max())
    eigenvalues = np.linalg.eigvalsh((H + H.T) / 2)
    exact = eigenvalues[-1]
    assert abs(value - exact) <= 1e-2 * abs(exact)


def test_search_stops_early_on_a_scripted_eigenvalue_and_keeps_that_epochs_arch(tmp_path, monkeypatch, capsys):
    """DARTS-ES inside darts_search.py: the eigenvalue is scripted (1 up to epoch 5, 2 from epoch 6,
    from 0) and the rule may return any epoch from 0 (its default of 10 is test_collapse.py's), so
    it stops after epoch 7 and keeps epoch 1's arch (files numbered from 1)."""
    import darts_search
    import early_stop
    import loop
    import plots
    from helpers import SEARCH_TINY as SEARCH_FLAGS, write_archive
    archive = write_archive(tmp_path / 'c.tar.gz', 4, 10)  # two steps an epoch
    calls = []

    def scripted(graph, alphas, solver, batches):
        calls.append(len(batches))
        return (2.0 if len(calls) - 1 >= 6 else 1.0), 1
    monkeypatch.setattr(hessian, 'dominant_eigenvalue', scripted)
    for owner, picture in ((plots, 'alpha_weights'), (loop, 'learning_curves'), (darts_search, 'draw_cells')):
        monkeypatch.setattr(owner, picture, lambda *a, **k: [])  # pictures are another test's: 2 s an epoch
    monkeypatch.setattr(early_stop, 'decide', functools.partial(early_stop.decide, start_epoch=0))
    folder = tmp_path / 'run'
    flags = [*SEARCH_FLAGS, '--dataset-path', str(archive), '-m', str(folder), '-e', '10',
             '--model-arch-name', str(folder / 'arch.json'), '--early-stop', 'True', '--arch-lr', '0.05',
             '--hessian-batches', '2']
    nn.clear_parameters()
    assert darts_search.main(flags) == 0
    out = capsys.readouterr().out
    assert len(calls) == 8 and set(calls) == {2}
    reason = (folder / 'early_stop.txt').read_text()
    assert reason.startswith('early stop (DARTS-ES) after epoch 8:') and 'architecture of epoch 2 is kept' in reason
    assert reason.strip() in out.splitlines()
    read = lambda name: json.loads((folder / name).read_text())
    assert read('arch.json') == read('arch_epoch_2.json')
    assert read('alphas.json') == read('alphas_epoch_2.json') != read('alphas_epoch_8.json')
    assert not (folder / 'alphas_epoch_9.json').exists()
    lines = (folder / 'Hessian-eigenvalue.series.txt').read_text().split('\n')
    assert [float(l.split()[1]) for l in lines if l] == [1.0] * 6 + [2.0] * 2
    arch = read('arch.json')
    (folder / 'arch.json').unlink()  # resumed, the stopped search runs no further epoch
    nn.clear_parameters()
    assert darts_search.main(flags + ['--resume', 'True']) == 0
    assert len(calls) == 8 and read('arch.json') == arch and not (folder / 'alphas_epoch_9.json').exists()


def symmetric(eigenvalues, seed=0):
    """A symmetric matrix with ``eigenvalues``, in a random orthonormal basis."""
    q, _ = np.linalg.qr(np.random.RandomState(seed).randn(len(eigenvalues), len(eigenvalues)))
    return q @ np.diag(eigenvalues) @ q.T


def test_lanczos_finds_the_largest_eigenvalue_not_the_largest_in_magnitude():
    H = symmetric([-3.0, 1.0, 0.5, 0.2, -0.1, 0.0])
    value, iterations = hessian.lanczos(lambda v: H @ v, 6, 500, 1e-12)
    assert value == pytest.approx(1.0, rel=1e-9) and iterations <= 6  # the whole space by the 6th product
    positive = symmetric([2.0, 1.0, -0.5, 0.2, 0.1, 0.0])
    assert hessian.lanczos(lambda v: positive @ v, 6, 500, 1e-12)[0] == pytest.approx(2.0, rel=1e-9)


def test_lanczos_converges_in_20_products_where_power_iteration_swings():
    """A spectrum like the alpha Hessian of a real search (224 alphas): the largest eigenvalue 0.35, a
    negative one almost as large, the rest in between. 20 power iterations are still 10 % or
    more away, swinging; Lanczos is within 0.1 % and stops by itself."""
    rng = np.random.RandomState(1)
    spectrum = np.concatenate([[0.35, -0.33, 0.3, -0.25], rng.uniform(-0.15, 0.15, 220)])
    H = symmetric(spectrum, seed=2)
    value, iterations = hessian.lanczos(lambda v: H @ v, 224)
    assert abs(value - 0.35) <= 1e-3 * 0.35 and iterations < hessian.MAX_ITERATIONS
    v = np.random.RandomState(hessian.START_SEED).randn(224)
    quotients = []
    for _ in range(20):
        hv = H @ (v / np.linalg.norm(v))
        quotients.append(float(v @ hv) / np.linalg.norm(v))
        v = hv
    assert abs(quotients[-1] - 0.35) > 0.1 * 0.35 and max(quotients[-4:]) - min(quotients[-4:]) > 0.02


