"""The recurrent cell (spaces/darts_rnn/cell.py) against a numpy computation of the paper's cell,
step by step, with and without its dropout masks."""
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
def test_the_cell_is_the_paper_s_step_by_step(name, masks):
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
