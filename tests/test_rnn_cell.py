"""The recurrent cell (spaces/darts_rnn/cell.py) against a numpy computation of the paper's cell,
step by step, with and without its dropout masks, built of nnabla's functions and of
numpy_functions' numpy ones."""
import numpy as np
import nnabla as nn
import pytest

from spaces.darts_rnn import arch, cell


def numpy_cell(xs, h, genotype, weights, x_mask, h_mask):
    """The paper's recurrent cell, written out in numpy."""
    def sigmoid(v):
        return 1 / (1 + np.exp(-v))
    functions = {'tanh': np.tanh, 'relu': lambda v: np.maximum(v, 0), 'sigmoid': sigmoid, 'identity': lambda v: v}
    hidden, out = h.shape[1], []
    for x in xs:
        ch = np.concatenate([x * x_mask, h * h_mask], axis=1) @ weights['W0']
        states = [h + sigmoid(ch[:, :hidden]) * (np.tanh(ch[:, hidden:]) - h)]
        for i, (op, source) in enumerate(genotype):
            s = states[source]
            ch = (s * h_mask) @ weights['W{}'.format(i + 1)]
            states.append(s + sigmoid(ch[:, :hidden]) * (functions[op](ch[:, hidden:]) - s))
        h = np.mean(states[1:], axis=0)
        out.append(h)
    return out


@pytest.mark.parametrize('name, masks', [('DARTS_V2', False), ('DARTS_V1', True)])
def test_the_cell_is_the_paper_s_step_by_step(name, masks, functions):
    nn.clear_parameters()
    rng = np.random.RandomState(0)
    batch, inputs, hidden, steps = 3, 5, 4, 4
    xs = [rng.randn(batch, inputs).astype(np.float32) for _ in range(steps)]
    h0 = rng.randn(batch, hidden).astype(np.float32)
    x_mask = (rng.rand(batch, inputs) > 0.5) / 0.5 if masks else np.ones((batch, inputs))
    h_mask = (rng.rand(batch, hidden) > 0.25) / 0.75 if masks else np.ones((batch, hidden))
    variables = [nn.Variable.from_numpy_array(x) for x in xs]
    hs = cell.unrolled(variables, nn.Variable.from_numpy_array(h0), arch.PAPER_ARCHS[name],
                       *(nn.Variable.from_numpy_array(m.astype(np.float32)) for m in (x_mask, h_mask)) if masks
                       else (None, None))
    nn.forward_all(hs)
    weights = {k.split('/')[-1]: v.d.astype(np.float64) for k, v in nn.get_parameters().items()}
    assert sorted(weights) == ['W{}'.format(i) for i in range(9)] and weights['W0'].shape == (9, 8)
    assert np.abs(weights['W3']).max() <= 0.04
    expected = numpy_cell([x.astype(np.float64) for x in xs], h0.astype(np.float64), arch.PAPER_ARCHS[name],
                          weights, x_mask, h_mask)
    for got, want in zip(hs, expected):
        assert np.allclose(got.d, want, rtol=1e-5, atol=1e-6)


def numpy_search_step(x, h, p, weights, h_mask, bn):
    """The paper's search cell (its model_search.py), one step, written out in numpy."""
    def sigmoid(v):
        return 1 / (1 + np.exp(-v))

    def norm(s):
        return (s - s.mean(axis=0)) / np.sqrt(s.var(axis=0) + 1e-5) if bn else s
    functions = {'tanh': np.tanh, 'relu': lambda v: np.maximum(v, 0), 'sigmoid': sigmoid, 'identity': lambda v: v}
    hidden = h.shape[1]
    ch = np.concatenate([x, h * h_mask], axis=1) @ weights['W0']
    states = [norm(h + sigmoid(ch[:, :hidden]) * (np.tanh(ch[:, hidden:]) - h))]
    row = 0
    for node in range(1, 9):
        s = 0
        for e, source in enumerate(states):
            ch = (source * h_mask) @ weights['W{}'.format(node)]
            for k, op in enumerate(arch.OPS[1:], 1):
                s = s + p[row + e, k] * (source + sigmoid(ch[:, :hidden]) * (functions[op](ch[:, hidden:]) - source))
        states.append(norm(s))
        row += node
    return np.mean(states[1:], axis=0)


@pytest.mark.parametrize('bn', [True, False])
def test_the_search_cell_is_the_paper_s_and_one_hot_weights_give_the_derived_cell(bn, functions):
    nn.clear_parameters()
    rng = np.random.RandomState(1)
    batch, inputs, hidden = 4, 3, 5
    x, h = rng.randn(batch, inputs).astype(np.float32), rng.randn(batch, hidden).astype(np.float32)
    h_mask = ((rng.rand(batch, hidden) > 0.25) / 0.75).astype(np.float32)
    p = rng.dirichlet(np.ones(5), 36)
    weights = nn.Variable.from_numpy_array(p.astype(np.float32))
    out = cell.search_step(*(nn.Variable.from_numpy_array(a) for a in (x, h)), weights, None,
                           nn.Variable.from_numpy_array(h_mask), bn)
    out.forward()
    params = {k.split('/')[-1]: v.d.astype(np.float64) for k, v in nn.get_parameters().items() if '/W' in '/' + k}
    assert np.allclose(out.d, numpy_search_step(x, h, p, params, h_mask, bn), rtol=1e-4, atol=1e-5)
    if not bn:  # one-hot weights on the DARTS_V2 cell's edges and ops: its own step, on the same weights
        genotype = arch.PAPER_ARCHS['DARTS_V2']
        one_hot = np.zeros((36, 5), np.float32)
        for node, (op, source) in enumerate(genotype, 1):
            one_hot[arch.EDGES.index((source, node)), arch.OPS.index(op)] = 1
        weights.d = one_hot
        out.forward()
        derived = cell.step(*(nn.Variable.from_numpy_array(a) for a in (x, h)), genotype, None,
                            nn.Variable.from_numpy_array(h_mask))
        derived.forward()
        assert np.allclose(out.d, derived.d, rtol=1e-5, atol=1e-6)
