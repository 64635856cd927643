"""PC-DARTS's options of the search: partial channels, channel shuffle, edge normalisation, the
derivation with betas and the arch warm-up (the second order with them: test_search.py)."""
import functools
import json

import numpy as np
import nnabla as nn
import pytest

import model_search
import operations
from helpers import NO_EIGENVALUE, one_line, run_cli
from spaces.darts_cnn import arch as darts_arch
from spaces.darts_cnn.network import supernet
from test_search import read, search


def shuffle_np(x, groups):
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w)


def test_channel_shuffle_interleaves_the_groups():
    x = np.arange(2 * 8 * 2 * 2, dtype=np.float32).reshape(2, 8, 2, 2)
    y = model_search.channel_shuffle(nn.Variable.from_numpy_array(x), 4)
    y.forward()
    assert [int(v) for v in y.d[0, :, 0, 0] // 4] == [0, 2, 4, 6, 1, 3, 5, 7]
    np.testing.assert_array_equal(y.d, shuffle_np(x, 4))


@pytest.mark.parametrize('stride', [1, 2])
def test_partial_mixed_op_is_the_mixed_op_on_c_over_k_channels_then_concat_and_shuffle(stride):
    """Forward and backward against the mixed op on the sliced input, numpy's bypass, concat and shuffle."""
    nn.clear_parameters()
    rng = np.random.RandomState(0)
    k, C = 4, 8
    x = nn.Variable.from_numpy_array(rng.randn(2, C, 8, 8).astype(np.float32), need_grad=True)
    w = [nn.Variable.from_numpy_array(np.full((1, 1), 0.1 * (i + 1), np.float32)) for i in range(7)]
    bn = functools.partial(operations.batch_norm, affine=False, test=False)
    node = operations.NodeOutput(x)
    out = model_search.partial_mixed_op(node, model_search.partial_input(node, k), w, C, stride, bn, k, operations.DARTS)
    upstream = rng.randn(*out.shape).astype(np.float32)
    out.forward()
    x.g = 0
    out.backward(upstream)
    part = nn.Variable.from_numpy_array(x.d[:, :C // k].copy(), need_grad=True)
    ref = model_search.mixed_op(operations.NodeOutput(part), w, C // k, stride, bn, operations.DARTS)  # same parameters
    ref.forward()
    rest = x.d[:, C // k:]
    if stride == 2:
        rest = rest.reshape(2, C - C // k, 4, 2, 4, 2).max(axis=(3, 5))
    np.testing.assert_allclose(out.d, shuffle_np(np.concatenate([ref.d, rest], axis=1), k), rtol=1e-5, atol=1e-6)
    unshuffled = shuffle_np(upstream, upstream.shape[1] // k)  # the inverse permutation
    part.g = 0
    ref.backward(unshuffled[:, :C // k].copy())
    np.testing.assert_allclose(x.g[:, :C // k], part.g, rtol=1e-4, atol=1e-5)
    if stride == 1:
        np.testing.assert_allclose(x.g[:, C // k:], unshuffled[:, C // k:], rtol=1e-6)


def handmade_alphas():
    """(alpha, betas) of num_nodes 5 whose betas change the derived cell (see the test below)."""
    alpha = np.zeros((5, 8))
    alpha[:, 2] = [2.0, 1.0, 3.0, 2.5, 0.5]
    alpha[4, 4] = 2.6
    return alpha, np.log([[1.0], [4.0], [1.0], [1.0], [10.0]])


def test_derivation_weighs_each_edge_by_its_normalised_beta():
    """num_nodes 5: node 2 has edges 0->2, 1->2; node 3 has 0->3, 1->3, 2->3 (rows 0..4)."""
    alpha = np.zeros((5, 8))
    alpha[:, 2] = [2.0, 1.0, 3.0, 2.5, 0.5]  # sep_conv_3x3 strongest everywhere, by these margins
    alpha[4, 4] = 2.6  # edge 2->3: max_pool_3x3
    # softmax rows: op weight of the best op: e^a / (e^a + 7) for a single raised entry
    best = np.exp([2.0, 1.0, 3.0, 2.5, 2.6]) / (np.exp([2.0, 1.0, 3.0, 2.5, 2.6]) + [7, 7, 7, 7, 7 + np.e ** 0.5 - 1])
    betas = np.log([[1.0], [4.0], [1.0], [1.0], [10.0]])  # softmax per node: (0.2, 0.8), (1/12, 1/12, 10/12)
    assert darts_arch.derive(alpha, alpha, 5)['arch_normal'] == {'2': [[2, 0], [2, 1]], '3': [[2, 0], [4, 2]]}
    strength3 = best[2:] * np.array([1, 1, 10]) / 12
    assert strength3.argsort()[::-1].tolist() == [2, 0, 1]
    arch = darts_arch.derive(alpha, alpha, 5, betas=(betas, betas))
    assert arch['arch_normal'] == {'2': [[2, 1], [2, 0]], '3': [[4, 2], [2, 0]]}
    assert arch['arch_reduction'] == arch['arch_normal']


def test_pc_darts_search_end_to_end(tmp_path, archive):
    """K=2 with edge normalisation and one warm-up epoch: betas saved, alphas frozen in epoch 1."""
    proc, folder = search(tmp_path, 'pc', archive, '-e', '2', *NO_EIGENVALUE, '--partial-channels', '2',
                          '--edge-normalization', 'True', '--arch-warmup-epochs', '1')
    assert proc.returncode == 0, proc.stderr
    first, last = read(folder / 'alphas_epoch_1.json'), read(folder / 'alphas.json')
    assert set(last) == {'alpha_normal', 'alpha_reduction', 'beta_normal', 'beta_reduction'}
    assert np.array(last['beta_normal']).shape == (5, 1)
    nn.clear_parameters()
    nn.seed(0)
    supernet(nn.Variable((1, 3, 32, 32)), 4, 3, 5, partial_channels=2, edge_normalization=True)
    initial = {k.split('/')[-1]: v.d.tolist() for k, v in nn.get_parameters().items() if k.startswith('alpha/')}
    assert set(first) == set(initial)
    for name in first:  # the warm-up epoch did not move them; the second did
        np.testing.assert_allclose(first[name], initial[name], rtol=1e-6)
        assert not np.allclose(last[name], first[name], rtol=1e-6, atol=0)
    arch = darts_arch.derive(*(np.array(last[n]) for n in darts_arch.ALPHA_NAMES), 5,
                           betas=[np.array(last[n]) for n in darts_arch.BETA_NAMES])
    assert read(folder / 'arch.json') == arch
    derived = run_cli('genotype.py', ['derive', folder / 'alphas.json', '--num-nodes', '5', '--out',
                                      tmp_path / 'derived.json'])
    assert derived.returncode == 0, derived.stderr
    assert (tmp_path / 'derived.json').read_bytes() == (folder / 'arch.json').read_bytes()
    assert not (folder / 'Validation-loss.series.txt').read_text().startswith('1 ')


def test_genotype_derive_and_the_weights_drawn_use_the_betas_of_alphas_json(tmp_path):
    alpha, betas = handmade_alphas()
    path = tmp_path / 'alphas.json'
    path.write_text(json.dumps({'alpha_normal': alpha.tolist(), 'alpha_reduction': alpha.tolist(),
                                'beta_normal': betas.tolist(), 'beta_reduction': betas.tolist()}))
    done = run_cli('genotype.py', ['derive', path, '--num-nodes', '5', '--out', tmp_path / 'arch.json'])
    assert done.returncode == 0, done.stderr
    assert read(tmp_path / 'arch.json') == darts_arch.derive(alpha, alpha, 5, betas=(betas, betas))
    assert read(tmp_path / 'arch.json')['arch_normal'] != darts_arch.derive(alpha, alpha, 5)['arch_normal']
    weights = darts_arch.cell_weights(json.loads(path.read_text()))
    edge = np.array([0.2, 0.8, 1 / 12, 1 / 12, 10 / 12])[:, None]  # the betas' softmax per node
    np.testing.assert_allclose(weights['normal'], darts_arch.softmax_weights(alpha) * edge, rtol=1e-12)


def test_an_alphas_file_with_one_cell_s_betas_is_refused(tmp_path):
    alpha, betas = handmade_alphas()
    path = tmp_path / 'alphas.json'
    path.write_text(json.dumps({'alpha_normal': alpha.tolist(), 'alpha_reduction': alpha.tolist(),
                                'beta_normal': betas.tolist()}))
    one_line(run_cli('genotype.py', ['derive', path, '--num-nodes', '5', '--out', tmp_path / 'arch.json']),
             str(path), 'not an alphas file', 'beta_reduction', code=2)
    assert not (tmp_path / 'arch.json').exists()
