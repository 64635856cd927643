"""The recurrent half of both jobs: windows and carried states, the second-order hypergradient of the
language model, NT-ASGD's averages in the checkpoints, and darts_search.py / darts_train.py on a
text corpus end to end, resumed, and refusing bad input in one line."""
import json
import os
import shutil

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S
import pytest

import numpy_functions
import methods
import numerics
import recurrent
from helpers import checkpoint_folders, one_line, read_h5, read_series, run_cli
from model_search import forward_backward
from spaces.darts_rnn import arch, cell, network
from spaces.darts_rnn.graph import Rates, Sizes, carried, keep_mask, training_graph
from test_search import rel, use_computed_parameters

WORDS = ['w{}'.format(i) for i in range(12)]
TINY = ['-c', 'cpu', '--dataset', 'text', '-b', '4', '--bptt', '5', '--embedding-size', '6', '--hidden-size', '6']


def write_corpus(folder, sizes=(1200, 300, 300), seed=0):
    """A learnable text folder: each word mostly follows its predecessor's successor, 12 words a line."""
    rng = np.random.RandomState(seed)
    os.makedirs(str(folder), exist_ok=True)
    for split, n in zip(('train', 'valid', 'test'), sizes):
        ids = [0]
        for _ in range(n):
            ids.append((ids[-1] + 1) % 12 if rng.rand() < 0.7 else rng.randint(12))
        lines = [' '.join(WORDS[i] for i in ids[k:k + 12]) for k in range(0, len(ids), 12)]
        (folder / '{}.txt'.format(split)).write_text('\n'.join(lines) + '\n')
    return folder


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp('text') / 'corpus')


def test_windows_are_consecutive_rows_and_the_state_is_zeroed_when_a_pass_begins():
    nn.clear_parameters()
    stream = np.arange(24).reshape(3, 8).T  # 8 rows of 3 columns: column j is 8j .. 8j+7
    windows = recurrent.Windows(stream, 3, carried('t', 3, 2), 'the text')
    assert windows.count == 2  # rows 0-2 and 3-5 (their targets 1-3, 4-6); the short tail is left out
    state = windows.state
    state.d = 5.0
    x, y, start, given = windows.at(3)  # the second window of the second pass
    assert given is state and (start == 5).all() and (state.d == 5).all()
    assert np.array_equal(x, stream[3:6]) and np.array_equal(y, stream[4:7])
    x, y, _, _ = windows.at(4)
    assert not state.d.any() and np.array_equal(x[:, 1], [8, 9, 10]) and np.array_equal(y[:, 1], [9, 10, 11])
    with pytest.raises(Exception, match='too few for one window of --bptt 8'):
        recurrent.Windows(stream, 8, state, 'the text')


def test_dropout_masks_drop_at_their_rate_and_keep_the_mean():
    mask = keep_mask(np.random.RandomState(0), (200, 50), 0.25)
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
    assert abs((mask == 0).mean() - 0.25) < 0.01 and abs(mask.mean() - 1) < 0.02
    assert (keep_mask(np.random.RandomState(0), (3, 2), 0.0) == 1).all()


def test_the_gradients_through_the_dropout_masks_are_finite_differences(functions):
    """Every mask has zeros (nnabla's MulN would give NaN there); the largest gradients of the
    embedding, W0 and a node's W against central differences of the loss on the same masks, with
    nnabla's functions and with numpy_functions' numpy ones."""
    nn.clear_parameters()
    nn.seed(2)
    graph = training_graph(network.derived(arch.PAPER_ARCHS['DARTS_V2']), Sizes(9, 4, 4, 3, 4),
                           Rates(0.5, 0.5, 0.5, 0.5, 0.3), 1e-3)
    solver = numerics.momentum_sgd(1.0, 0.0)
    solver.set_parameters(graph['weights'])
    rng = np.random.RandomState(2)
    for p in graph['weights'].values():  # larger than the initialisation: gradients well above float32's rounding
        p.d = rng.uniform(-0.7, 0.7, p.shape)
    state = carried('train', 3, 4)
    window = (rng.randint(0, 9, (4, 3)), rng.randint(0, 9, (4, 3)), rng.randn(3, 4).astype(np.float32), state)

    def loss():
        graph['feeder'].rng = np.random.RandomState(7)
        graph['feed'](window)
        graph['loss'].forward()
        return float(graph['loss'].d)
    graph['feeder'].rng = np.random.RandomState(7)
    forward_backward(graph, window, {'weights': solver})
    assert all((getattr(graph['masks'], name).d == 0).any() for name in graph['masks']._fields)
    for name in ('embedding', 'cell/W0', 'cell/W4'):
        p = graph['weights'][name]
        grad = p.g.copy()
        assert np.isfinite(grad).all()
        for index in np.argsort(-np.abs(grad).ravel())[:3]:
            saved = p.d.copy()
            steps = []
            for sign in (1, -1):
                p.d = saved
                p.d.flat[index] += sign * 1e-3
                steps.append(loss())
            p.d = saved
            assert (steps[0] - steps[1]) / 2e-3 == pytest.approx(grad.flat[index], rel=0.05, abs=1e-4), name


def exact_language_hypergradient(alpha, weights, xi, wd, train, valid, sizes):
    """grad_a L_val(w - xi (grad_w L_train(w, a) + wd w), a) of the supernet language model without BN
    or dropout, by nnabla's double backward."""
    mix = F.softmax(alpha, axis=1)
    step = (lambda x, h, xm, hm: cell.search_step(x, h, mix, xm, hm, bn=False))

    def loss(window, params, scope):
        with nn.parameter_scope(scope):
            for k, v in params.items():
                nn.parameter.set_parameter(k, v)
            tokens, targets, h0 = (nn.Variable.from_numpy_array(a) for a in window[:3])
            logits, _, hs = network.language_model(tokens, h0, step, sizes.vocabulary, sizes.embedding)
            return network.loss(logits, targets, hs, 1e-3)
    names = list(weights)
    grads = nn.grad([loss(train, weights, 'exact_train')], [weights[k] for k in names])
    unrolled = {k: weights[k] - xi * (g + wd * weights[k]) for k, g in zip(names, grads)}
    result = nn.grad([loss(valid, unrolled, 'exact_valid')], [alpha])[0]
    result.forward()
    return result.d.copy()


def test_the_second_order_hypergradient_of_the_language_model_is_the_exact_one(monkeypatch):
    """ReLU becomes softplus (a finite difference across its kink sees a jump that a second derivative
    does not), and the words' gather an embed (the same rows; nnabla has no double backward of a
    gather); the states carried into both windows are not zero."""
    use_computed_parameters(monkeypatch)
    monkeypatch.setitem(cell.ACTIVATIONS, 'relu', F.softplus)
    embed = F.embed
    monkeypatch.setattr(F, 'gather', lambda x, indices, axis=0: embed(indices, x))
    nn.clear_parameters()
    nn.seed(1)
    rng = np.random.RandomState(1)
    sizes = Sizes(7, 4, 4, 2, 3)
    with nn.parameter_scope('alpha'):
        alpha = nn.parameter.get_parameter_or_create('alpha_recurrent', (36, 5), need_grad=True)
    alpha.d = rng.randn(36, 5)
    mix = F.softmax(alpha, axis=1)
    graph = training_graph(lambda x, h, xm, hm: cell.search_step(x, h, mix, xm, hm, bn=False), sizes,
                           Rates(0, 0, 0, 0, 0), 1e-3)
    solvers = {'weights': numerics.momentum_sgd(0.5, 0.0), 'alphas': S.Adam(3e-3, 0.9, 0.999)}
    for group, solver in solvers.items():
        solver.set_parameters(graph[group])
    windows = []
    for name in ('train', 'valid'):
        state = carried(name, 2, 4)
        state.d = rng.randn(2, 4)
        windows.append((rng.randint(0, 7, (3, 2)), rng.randint(0, 7, (3, 2)), state.d.copy(), state))
    states = [w[2] for w in windows]
    method = methods.get('darts', second_order=True, eta=0.5, weight_decay=3e-4, momentum=0.0, unroll_clip=1e9)
    method.attach(graph, solvers)
    before = {k: p.d.copy() for k, p in graph['weights'].items()}
    method.alpha_gradient(*windows)
    approx = alpha.g.copy()
    assert all(np.array_equal(p.d, before[k]) for k, p in graph['weights'].items())
    carried_on = windows[1][3].d.copy()
    monkeypatch.setattr(numpy_functions, 'on_numpy', lambda context: False)  # nn.grad: no double backward of numpy's
    exact = exact_language_hypergradient(alpha, graph['weights'], 0.5, 3e-4, *windows, sizes)
    first = methods.get('darts')
    first.attach(graph, solvers)
    first.alpha_gradient(*windows)
    assert rel(approx, exact) < 1e-2 < rel(alpha.g, exact)
    assert not np.array_equal(carried_on, states[1])  # the validation window's state is carried on


def test_averages_bound_to_parameters_follow_the_weights():
    nn.clear_parameters()
    w = nn.parameter.get_parameter_or_create('w', (3,))
    kept = recurrent.kept('asgd', {'w': w})
    averager = numerics.Averager({'w': w}, kept)
    for value in (1.0, 2.0, 6.0):
        w.d = value
        averager.update()
    assert np.allclose(kept['w'].d, 3.0) and 'asgd/w' in nn.get_parameters(grad_only=False)


def search(folder, corpus, *extra):
    return run_cli('darts_search.py', TINY + ['--dataset-path', corpus, '--model-lr', '2', '-m', folder,
                                              '--model-arch-name', folder / 'arch.json'] + list(extra))


def retrain(folder, corpus, *extra):
    return run_cli('darts_train.py', TINY + ['--dataset-path', corpus, '-m', folder] + list(extra))


def series(folder, name):
    """The values of series ``name`` of a run, as floats."""
    return [float(v) for _, v in read_series(folder, name.replace(' ', '-'))]


def same_series(a, b, names):
    for name in names:
        assert read_series(a, name.replace(' ', '-')) == read_series(b, name.replace(' ', '-')), name


@pytest.mark.parametrize('order', ['first', 'second'])
def test_a_search_writes_the_cell_of_every_epoch_and_resumes_to_the_same_end(corpus, tmp_path, order):
    epochs = 2 if order == 'first' else 1  # second order: 5 passes a step, so one epoch (of 60 steps)
    flags = ['-e', str(epochs), '-s', '40', '--second-order', str(order == 'second')]
    a, b = tmp_path / 'a', tmp_path / 'b'
    res = search(a, corpus, *flags, '--tensorboard', tmp_path / 'events')
    assert res.returncode == 0, res.stderr
    assert list((tmp_path / 'events').glob('events.out.tfevents.*'))
    assert 'recurrent cell: 1: ' in res.stdout and 'python darts_train.py --context cpu --dataset text' in res.stdout
    for name in ('arch_epoch_1.json', 'arch_epoch_{}.json'.format(epochs), 'alphas_epoch_{}.json'.format(epochs),
                 'recurrent_cell.png', 'learning_curves.png', 'alphas.png'):
        assert (a / name).exists(), name
    arch = json.loads((a / 'arch.json').read_text())
    assert arch['search_space'] == 'darts-rnn' and len(arch['recurrent']) == 8
    assert np.array(json.loads((a / 'alphas.json').read_text())['alpha_recurrent']).shape == (36, 5)
    results = json.loads((a / 'results.json').read_text())
    assert results['validation_perplexity'] == pytest.approx(series(a, 'Validation perplexity')[-1], rel=1e-4)
    assert 1 < results['validation_perplexity'] < 100
    shutil.copytree(str(a), str(b))
    shutil.rmtree(checkpoint_folders(b)[-1])  # back to iteration 40 of the last epoch's 60
    for name in ('arch.json', 'alphas.json', 'results.json'):
        os.remove(str(b / name))
    res = search(b, corpus, *flags, '--resume')
    assert res.returncode == 0, res.stderr
    assert (a / 'alphas.json').read_text() == (b / 'alphas.json').read_text()
    same_series(a, b, ('Training loss', 'Validation perplexity', 'Validation cross entropy'))


def test_a_retraining_switches_to_nt_asgd_tests_at_batch_1_and_resumes_to_the_same_end(corpus, tmp_path):
    flags = ['-e', '9', '-s', '50', '--model-arch-name', 'DARTS_V2']
    a, b = tmp_path / 'a', tmp_path / 'b'
    res = retrain(a, corpus, *flags)
    assert res.returncode == 0, res.stderr
    switch = series(a, 'NT-ASGD averaging')
    assert switch[0] == 0 and switch[-1] == 1  # the validation perplexity stalled, the averaging began
    results = json.loads((a / 'results.json').read_text())
    assert results['validation_perplexity'] == pytest.approx(min(series(a, 'Validation perplexity')), rel=1e-4)
    words = 12 + 1  # and <eos>
    assert results['parameters'] == words * 6 + 12 * 12 + 8 * 6 * 12 + words  # embedding, W0, W1..W8, decoder bias
    assert 'test perplexity: {:.2f} (batch 1'.format(results['test_perplexity']) in res.stdout
    saved = read_h5(a / 'params.h5')
    assert sorted(saved) == sorted(['embedding', 'decoder_bias'] + ['cell/W{}'.format(i) for i in range(9)])
    shutil.copytree(str(a), str(b))
    shutil.rmtree(checkpoint_folders(b)[-1])  # back into the last epoch, after the switch: averages restored
    for name in ('params.h5', 'results.json'):
        os.remove(str(b / name))
    res = retrain(b, corpus, *flags, '--resume')
    assert res.returncode == 0, res.stderr
    assert json.loads((b / 'results.json').read_text())['test_perplexity'] == results['test_perplexity']
    same_series(a, b, ('Validation perplexity', 'Test perplexity', 'Training loss', 'NT-ASGD averaging'))
    res = run_cli('darts_train.py', TINY + ['--dataset-path', corpus, '--model-arch-name', 'DARTS_V2', '--eval-only',
                                            '--model-load-path', a / 'params.h5'])
    assert 'test perplexity: {:.2f} (batch 1)'.format(results['test_perplexity']) in res.stdout, res.stderr


def test_a_retraining_on_numpy_s_functions_resumes_to_the_same_end(tmp_path):
    """At 128 units on 64 columns (BPTT 35) the products, elementwise products, tanh and softmax
    cross entropy of the training steps are numpy_functions' (the tiny runs above are below their
    thresholds): a run stopped after its third of four steps ends as the uninterrupted one."""
    columns, units, words = 64, 128, 13
    least = numpy_functions.MIN_WORK
    assert columns * units >= max(least['multiply'], least['tanh'])
    assert columns * 2 * units * 2 * units >= least['product']  # [x, h] W0
    assert 35 * columns * units * words >= least['product']  # the decoder
    assert 35 * columns * words >= least['softmax_cross_entropy']
    text = write_corpus(tmp_path / 'corpus', sizes=(columns * 71, 400, 60))  # two windows an epoch
    flags = ['-c', 'cpu', '--dataset', 'text', '--dataset-path', text, '-b', str(columns), '--bptt', '35',
             '--embedding-size', str(units), '--hidden-size', str(units), '-e', '2', '-s', '1',
             '--model-arch-name', 'DARTS_V2']
    a, b = tmp_path / 'a', tmp_path / 'b'
    res = run_cli('darts_train.py', flags + ['-m', a])
    assert res.returncode == 0, res.stderr
    shutil.copytree(str(a), str(b))
    shutil.rmtree(checkpoint_folders(b)[-1])  # back to after step 3
    for name in ('params.h5', 'results.json'):
        os.remove(str(b / name))
    res = run_cli('darts_train.py', flags + ['-m', b, '--resume'])
    assert res.returncode == 0, res.stderr
    assert 'epoch 1/2' not in res.stdout + res.stderr and 'epoch 2/2: training loss' in res.stdout  # resumed in 2
    assert (a / 'params.h5').read_bytes() == (b / 'params.h5').read_bytes()
    same_series(a, b, ('Training loss', 'Validation perplexity', 'Test perplexity'))
    assert json.loads((a / 'results.json').read_text())['test_perplexity'] == \
        json.loads((b / 'results.json').read_text())['test_perplexity']


def test_the_summary_counts_the_paper_s_23_million_parameters_without_data():
    res = run_cli('darts_train.py', ['--dataset', 'ptb', '--model-arch-name', 'DARTS_V2', '--summary-only'])
    assert res.returncode == 0, res.stderr
    assert 'parameters: 22960000' in res.stdout  # 10,000 x 850 + 1,700 x 1,700 + 8 x 850 x 1,700 + 10,000


def test_a_cnn_arch_on_a_corpus_and_a_recurrent_arch_on_images_are_one_line(corpus, tmp_path):
    cnn = tmp_path / 'cnn.json'
    cnn.write_text(json.dumps({'search_space': 'nas-bench-201', 'arch': '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'}))
    one_line(retrain(tmp_path / 'm', corpus, '--model-arch-name', cnn), 'is an arch of the NAS-Bench-201 space',
             '--dataset text')
    rnn = tmp_path / 'rnn.json'
    rnn.write_text(json.dumps({'search_space': 'darts-rnn', 'recurrent': [['relu', 0]] * 8}))
    one_line(run_cli('darts_train.py', ['-c', 'cpu', '--model-arch-name', rnn, '-m', tmp_path / 'm']),
             'is an arch of the DARTS recurrent space', '--dataset cifar10 (the DARTS space)')
    seven = tmp_path / 'seven.json'
    seven.write_text(json.dumps({'search_space': 'darts-rnn', 'recurrent': [['relu', 0]] * 7}))
    one_line(retrain(tmp_path / 'm', corpus, '--model-arch-name', seven), 'a recurrent arch is 8 nodes')
    assert not (tmp_path / 'm').exists()


@pytest.mark.parametrize('extra, fragment', [
    (['--num-cells', '3'], '--num-cells means nothing on --search-space darts-rnn'),
    (['--embedding-size', '8'], 'must be equal: the decoder is tied to the embedding'),
    (['--dropout-x', '1'], '--dropout-x must be in [0, 1)'),
    (['--method', 'gdas'], '--method gdas is for the image spaces'),
    (['--search-space', 'darts'], '--dataset text is a text corpus, and --search-space darts is for images'),
    (['-b', '2000'], 'too few for batches of 2000 columns'),
    (['--bptt', '300'], 'too few for one window of --bptt 300'),
])
def test_bad_flags_and_a_corpus_too_small_are_one_line_before_any_work(corpus, tmp_path, extra, fragment):
    one_line(search(tmp_path / 'm', corpus, *extra), fragment)
    assert not list((tmp_path / 'm').glob('checkpoint_*')) if (tmp_path / 'm').exists() else True


def test_bad_corpus_files_are_one_line(tmp_path):
    for name, content, fragment in (('empty', b'', 'is empty'), ('binary', b'\x00\x01\x02 w1 w2\n', 'is not a text file'),
                                    ('latin', 'caf\xe9 w1\n'.encode('latin-1'), 'is not UTF-8 text')):
        folder = write_corpus(tmp_path / name)
        (folder / 'train.txt').write_bytes(content)
        one_line(retrain(tmp_path / (name + '.m'), folder, '--model-arch-name', 'DARTS_V2'), 'train.txt', fragment)
    folder = write_corpus(tmp_path / 'missing')
    os.remove(str(folder / 'test.txt'))
    one_line(retrain(tmp_path / 'missing.m', folder, '--model-arch-name', 'DARTS_V2'), 'test.txt')
