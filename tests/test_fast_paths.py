"""Each formulation chosen for speed against a plain formulation of the same math, on the same
inputs and weights, forward and backward (benchmarks/bench.py measures what they save)."""

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.parametric_functions as PF
import pytest

import nnabla.solvers as S

import model_eval
import model_search
import numerics
import operations
from helpers import grouped_depthwise
from methods.darts import Unroller
from model_search import forward_backward as search_pass
from spaces.darts_cnn.arch import PAPER_ARCHS
from spaces.darts_cnn.network import network, supernet
from test_search import plain_mixed_op, tiny_search_setup

RTOL, ATOL = 1e-4, 1e-6
pytestmark = pytest.mark.usefixtures('fresh_parameters')


def variable(rng, shape, need_grad=True):
    return nn.Variable.from_numpy_array(rng.randn(*shape).astype(np.float32), need_grad=need_grad)


def forward_backward(outputs, inputs, rng):
    """Outputs and the gradients of sum(output * random probe) w.r.t. ``inputs`` and every parameter."""
    probes = [nn.Variable.from_numpy_array(np.random.RandomState(99).randn(*y.shape).astype(np.float32))
              for y in outputs]
    loss = F.add_n(*[F.sum(y * p) for y, p in zip(outputs, probes)])
    targets = list(inputs) + list(nn.get_parameters().values())
    for v in targets:
        v.grad.zero()
    loss.forward()
    loss.backward()
    return [y.d.copy() for y in outputs], [v.g.copy() for v in targets]


def assert_same(fast, plain):
    """Equal up to float32 rounding (sums taken in another order), relative to each array's scale."""
    for a, b in zip(fast[0] + fast[1], plain[0] + plain[1]):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * max(np.abs(b).max(), ATOL))


@pytest.mark.parametrize('per_sample', [False, True])
def test_scale_is_the_broadcasting_multiply(per_sample):
    rng = np.random.RandomState(1)
    h = variable(rng, (4, 3, 5, 5))
    s = variable(rng, (4, 1, 1, 1) if per_sample else (1, 1))
    broadcast = s if per_sample else F.reshape(s, (1, 1, 1, 1))
    assert_same(forward_backward([operations.scale(h, s)], [h, s], rng),
                forward_backward([F.mul2(h, broadcast)], [h, s], rng))


def test_scaled_batch_norm_is_the_weight_times_the_plain_batch_norm():
    rng = np.random.RandomState(2)
    x, w = variable(rng, (4, 3, 6, 6)), variable(rng, (1, 1))
    fast = operations.batch_norm(x, affine=False, test=False, gamma=w)
    plain = F.mul2(operations.batch_norm(x, affine=False, test=False), F.reshape(w, (1, 1, 1, 1)))
    assert sorted(nn.get_parameters(grad_only=False)) == ['bn/bn/mean', 'bn/bn/var']  # one BN, shared
    assert_same(forward_backward([fast], [x, w], rng), forward_backward([plain], [x, w], rng))
    running = [p.d.copy() for p in nn.get_parameters(grad_only=False).values()]
    fast.forward()
    after_fast = [p.d.copy() for p in nn.get_parameters(grad_only=False).values()]
    for p, v in zip(nn.get_parameters(grad_only=False).values(), running):
        p.d = v
    plain.forward()
    for p, v in zip(nn.get_parameters(grad_only=False).values(), after_fast):  # same running statistics
        np.testing.assert_allclose(p.d, v, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('kernel, stride, dilation', [(3, 1, 1), (5, 2, 1), (3, 2, 2), (5, 1, 2)])
def test_depthwise_convolution_is_the_grouped_convolution(kernel, stride, dilation):
    rng = np.random.RandomState(3)
    x = variable(rng, (2, 4, 9, 9))
    pad = dilation * (kernel - 1) // 2
    fast = operations.depthwise(x, kernel, stride, pad, dilation)
    plain = grouped_depthwise(x, kernel, stride, pad, dilation)
    assert len(nn.get_parameters()) == 1  # the same (C, k, k) weights
    assert_same(forward_backward([fast], [x], rng), forward_backward([plain], [x], rng))


def test_classifier_mean_is_global_average_pooling():
    """F.mean over the spatial axes (which the CUDA extension implements) against
    F.global_average_pooling (which it does not), with the same classifier parameters."""
    rng = np.random.RandomState(8)
    h = variable(rng, (4, 6, 5, 5))
    fast = operations.classifier(h, 10)
    shapes = {k: p.shape for k, p in nn.get_parameters().items()}
    assert shapes == {'classifier/affine/W': (6, 10), 'classifier/affine/b': (10,)}
    with nn.parameter_scope('classifier'):
        plain = PF.affine(F.global_average_pooling(h), 10)
    assert len(nn.get_parameters()) == 2  # the same parameters
    assert_same(forward_backward([fast], [h], rng), forward_backward([plain], [h], rng))


def one_relu_per_op(monkeypatch):
    """Make every op compute its own ReLU of its input node (the plain network)."""
    monkeypatch.setattr(operations.NodeOutput, 'relu', property(lambda node: F.relu(node.h)))


def test_one_relu_per_node_gives_the_network_of_one_relu_per_op(monkeypatch):
    rng = np.random.RandomState(4)
    x = variable(rng, (2, 3, 32, 32))
    drop = model_eval.DropPath()
    fast = network(x, PAPER_ARCHS['DARTS_V2'], 4, 5, auxiliary=True, drop_path=drop)
    drop.refresh(np.random.RandomState(5), 0.3)
    n = len(drop.masks)
    fast_result = forward_backward(list(fast), [x], rng)
    one_relu_per_op(monkeypatch)
    plain = network(x, PAPER_ARCHS['DARTS_V2'], 4, 5, auxiliary=True, drop_path=drop)
    assert len(drop.masks) == 2 * n
    for m_fast, m_plain in zip(drop.masks[:n], drop.masks[n:]):
        m_plain.d = m_fast.d
    assert_same(fast_result, forward_backward(list(plain), [x], rng))


def test_supernet_with_shared_relus_and_folded_weights_is_the_plain_supernet(monkeypatch):
    """The whole supernet against one built from the plain mixed op of test_search (each op on its
    own ReLU, a broadcasting multiply per op output)."""
    rng = np.random.RandomState(6)
    x = variable(rng, (2, 3, 32, 32))
    fast = supernet(x, 2, 3, 5)
    for a in model_search.split_parameters(nn.get_parameters())[1].values():
        a.d = rng.randn(*a.shape)
    fast_result = forward_backward([fast], [x], rng)
    one_relu_per_op(monkeypatch)
    monkeypatch.setattr(model_search, 'mixed_op', plain_mixed_op)
    n = len(nn.get_parameters(grad_only=False))
    plain = supernet(x, 2, 3, 5)
    assert len(nn.get_parameters(grad_only=False)) == n  # built on the same parameters
    assert_same(fast_result, forward_backward([plain], [x], rng))


@pytest.mark.parametrize('only', ['alphas', 'weights'])
def test_a_pass_for_one_group_computes_its_gradients_and_leaves_the_others(only):
    graph, weights, alphas, solvers, batch, _ = tiny_search_setup(seed=7)
    groups = {'weights': weights, 'alphas': alphas}
    full = search_pass(graph, batch, solvers)
    reference = {k: p.g.copy() for k, p in {**weights, **alphas}.items()}

    def assert_gradients(computed):
        """The groups in ``computed`` hold the gradients of the full pass, the others the sentinel."""
        for group, params in groups.items():
            for k, p in params.items():
                if group in computed:
                    np.testing.assert_allclose(p.g, reference[k], rtol=1e-5, atol=1e-7, err_msg=k)
                else:
                    assert (p.g == 7.0).all(), k

    for p in {**weights, **alphas}.values():
        p.g = 7.0  # a sentinel for gradients the pass must not touch
    assert search_pass(graph, batch, {only: solvers[only]}) == full
    assert_gradients({only})
    # afterwards the graph is as it was: a plain backward of the loss reaches every parameter again
    for p in {**weights, **alphas}.values():
        p.g = 0
    graph['loss'].forward()
    graph['loss'].backward()
    assert_gradients(set(groups))


@pytest.mark.parametrize('nesterov', [False, True], ids=['momentum', 'nesterov'])
def test_unroller_weight_arithmetic_is_numpys(nesterov):
    """w' = w - xi (g + wd w + 0.9 buf), buf PyTorch's momentum buffer: v / lr of S.Momentum,
    -v / lr of S.Nesterov (whose steps are PyTorch's Nesterov steps, numerics.py)."""
    graph, weights, alphas, solvers, batch, _ = tiny_search_setup(seed=7)
    if nesterov:
        solvers['weights'] = S.Nesterov(0.05, 0.9)
        solvers['weights'].set_parameters(weights)
    search_pass(graph, batch, {'weights': solvers['weights']})
    solvers['weights'].update()  # non-zero momentum
    solvers['weights'].set_learning_rate(0.05)
    xi, wd = 0.3, 1e-2
    unroller = Unroller(weights, solvers['weights'], wd, 0.9, nesterov)
    w = {k: p.d.astype(np.float64) for k, p in weights.items()}
    buf = {k: (-1 if nesterov else 1) * s.pstate['m'].d / 0.05 for k, s in solvers['weights'].get_states().items()}
    assert all(np.abs(b).max() > 0 for b in buf.values())
    unroller.save(xi)
    search_pass(graph, batch, {'weights': solvers['weights']})
    g = {k: p.g.astype(np.float64) for k, p in weights.items()}
    unroller.unroll()
    for k, p in weights.items():
        np.testing.assert_allclose(p.d, w[k] - xi * (g[k] + wd * w[k] + 0.9 * buf[k]), rtol=1e-5, atol=1e-6)
    norm = unroller.keep_direction()
    assert norm == pytest.approx(np.sqrt(sum((v ** 2).sum() for v in g.values())), rel=1e-5)
    for p in weights.values():
        p.g = 0  # the direction was copied, not shared
    for step in (0.5, -0.25):
        unroller.perturb(step)
        for k, p in weights.items():
            np.testing.assert_allclose(p.d, w[k] + step * g[k], rtol=1e-5, atol=1e-6)
    unroller.restore()
    for k, p in weights.items():
        assert np.array_equal(p.d, w[k].astype(np.float32)), k


def count_calls(work):
    """The nnabla function calls (forward and backward) of ``work()``."""
    calls = []
    nn.set_function_pre_hook('count', lambda f: calls.append(f.info.type_name))
    try:
        work()
    finally:
        nn.unset_function_pre_hook('count')
    return calls


def test_weight_arithmetic_and_clip_take_a_few_functions_per_step():
    """Second-order weight arithmetic at most 3 functions per weight tensor and step (save,
    unroll, direction and its norm, perturb twice, restore), the global-norm clip at most 3."""
    graph, weights, alphas, solvers, batch, _ = tiny_search_setup(seed=7)
    unroller = Unroller(weights, solvers['weights'], 1e-2, 0.9)
    clipper = numerics.GradClipper(weights, 1e-3)

    def arithmetic():
        unroller.save(0.1)
        unroller.unroll()
        unroller.keep_direction()
        for step in (0.5, -0.5):
            unroller.perturb(step)
        unroller.restore()
    assert len(count_calls(arithmetic)) <= 3 * len(weights)
    assert len(count_calls(lambda: clipper(solvers['weights']))) <= 3
