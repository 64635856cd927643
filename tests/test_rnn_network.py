"""The language model around the recurrent cell (spaces/darts_rnn/network.py) against numpy: the
tied embedding and decoder, the masks where the paper's code puts its dropouts, and the loss with
TAR."""
import numpy as np
import nnabla as nn
import pytest

from spaces.darts_rnn import arch, network
from test_rnn_cell import numpy_cell


def numpy_model(tokens, h0, genotype, weights, masks):
    """The paper's RNNModel forward and its loss terms, in numpy."""
    E = weights['embedding'] * masks['embedding']
    xs = [E[row] * masks['inputs'] for row in tokens]
    hs = numpy_cell(xs, h0, genotype, weights, masks['x'], masks['hidden'])
    logits = np.concatenate([h * masks['outputs'] for h in hs]) @ weights['embedding'].T + weights['decoder_bias']
    return logits, hs


@pytest.mark.parametrize('with_masks', [False, True])
def test_the_model_and_its_loss_are_the_paper_s(with_masks):
    nn.clear_parameters()
    rng = np.random.RandomState(3)
    steps, batch, size, vocabulary = 3, 2, 4, 7
    tokens, targets = rng.randint(0, vocabulary, (steps, batch)), rng.randint(0, vocabulary, (steps, batch))
    h0 = rng.randn(batch, size).astype(np.float32)
    shapes = {'embedding': (vocabulary, 1), 'inputs': (batch, size), 'x': (batch, size), 'hidden': (batch, size),
              'outputs': (batch, size)}
    masks = {k: ((rng.rand(*s) > 0.3) / 0.7 if with_masks else np.ones(s)).astype(np.float32)
             for k, s in shapes.items()}
    given = network.Masks(**{k: nn.Variable.from_numpy_array(v) for k, v in masks.items()}) if with_masks else None
    logits, last, hs = network.language_model(nn.Variable.from_numpy_array(tokens), nn.Variable.from_numpy_array(h0),
                                              network.derived(arch.PAPER_ARCHS['DARTS_V2']), vocabulary, size, given)
    total = network.loss(logits, nn.Variable.from_numpy_array(targets), hs, tar=1e-3)
    nll = network.loss(logits, nn.Variable.from_numpy_array(targets), hs)
    nn.forward_all([total, nll, last])
    weights = {k.split('/')[-1]: v.d.astype(np.float64) for k, v in nn.get_parameters().items()}
    assert weights['embedding'].shape == (7, 4) and not weights['decoder_bias'].any()
    expected, expected_hs = numpy_model(tokens, h0.astype(np.float64), arch.PAPER_ARCHS['DARTS_V2'], weights,
                                        {k: v.astype(np.float64) for k, v in masks.items()})
    assert np.allclose(logits.d, expected, rtol=1e-5, atol=1e-6) and np.allclose(last.d, expected_hs[-1], atol=1e-6)
    log_p = expected - np.log(np.exp(expected).sum(axis=1, keepdims=True))
    cross_entropy = -log_p[np.arange(steps * batch), targets.ravel()].mean()
    tar = np.mean([(b - a) ** 2 for a, b in zip(expected_hs, expected_hs[1:])])
    assert float(nll.d) == pytest.approx(cross_entropy, rel=1e-5)
    assert float(total.d) == pytest.approx(cross_entropy + 1e-3 * tar, rel=1e-5)
