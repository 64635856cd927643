"""The search: exact second-order hypergradient, derivation, and the darts_search.py CLI."""
import functools
import json
import shutil

import numpy as np
import nnabla as nn
import nnabla.functions as F
import nnabla.solvers as S
import pytest

import model_search
import operations
import spaces
from helpers import NO_EIGENVALUE, SEARCH_TINY, cuda_installed, grouped_depthwise, one_line, read_series, run_cli, train
from methods.darts import Unroller, unrolled_alpha_grads
from model_eval import count_parameters
from model_search import forward_backward, search_graph
from spaces.darts_cnn import arch as darts_arch
from spaces.darts_cnn.network import supernet
from spaces.space import Net
from tasks.classification import CIFAR10


def tiny_search_setup(seed=0, C=2, cells=3, nodes=4, batch=2, **options):
    """A tiny supernet (with PC-DARTS ``options``), its solvers after one real weight step (so
    momentum is non-zero), and two batches."""
    nn.clear_parameters()
    nn.seed(seed)
    rng = np.random.RandomState(seed)
    graph = search_graph(spaces.get('darts', num_nodes=nodes), Net(C, cells, CIFAR10, **options), batch)
    weights, alphas = model_search.split_parameters(nn.get_parameters(grad_only=True))
    for a in alphas.values():
        a.d = rng.randn(*a.shape)  # far from uniform so that the ops differ in weight
    solvers = {'weights': S.Momentum(0.05, 0.9), 'alphas': S.Adam(3e-4, 0.5, 0.999)}
    solvers['weights'].set_parameters(weights)
    solvers['alphas'].set_parameters(alphas)
    batches = [(rng.randn(batch, 3, 32, 32).astype(np.float32), rng.randint(0, 10, (batch, 1))) for _ in range(3)]
    forward_backward(graph, batches[2], {'weights': solvers['weights']})
    solvers['weights'].update()
    return graph, weights, alphas, solvers, batches[0], batches[1]


def plain_mixed_op(x, weights, C, stride, bn, table=operations.DARTS):
    """The mixed op as the paper writes it, sum_k w_k op_k(x): each op on its own input node (its
    own ReLU), a BN after the pools where the table has one, each output times its (1, 1) weight
    by broadcasting multiply; an op without a weight (the supernet's zero op) is left out."""
    outs = []
    for k, (op, w) in enumerate(zip(table.functions, weights)):
        if w is None:
            continue
        with nn.parameter_scope('op{}'.format(k)):
            h = op(operations.NodeOutput(x.h), C, stride, bn)
            h = bn(h) if k in table.pools and table.pool_bn else h
        outs.append(F.mul2(h, F.reshape(w, (1, 1, 1, 1))))
    return F.add_n(*outs)


def use_computed_parameters(monkeypatch):
    """Let parametric functions use the Variable set as a parameter itself (nnabla otherwise hands
    out a copy unlinked from its parents), so that a network can be built on w'(a)."""
    original = nn.parametric_functions.get_parameter_or_create

    def linked(name, *args, **kwargs):
        param = nn.parameter.get_parameter(name)
        return param if param is not None else original(name, *args, **kwargs)
    for module in (nn.parametric_functions, nn.parameter):  # BN looks it up in nn.parameter
        monkeypatch.setattr(module, 'get_parameter_or_create', linked)


def exact_hypergradient(weights, alphas, solvers, xi, wd, train_batch, valid_batch, C=2, cells=3, nodes=4,
                        **options):
    """grad_a L_val(w - xi (0.9 buf + grad_w L_train(w, a) + wd w), a) by nnabla's double backward."""
    lr = solvers['weights'].learning_rate()
    states = solvers['weights'].get_states()
    everything = nn.get_parameters(grad_only=False)
    x, y = (nn.Variable.from_numpy_array(v) for v in train_batch)
    with nn.parameter_scope('exact_train'):
        for k, v in everything.items():
            nn.parameter.set_parameter(k, v)
        loss = F.mean(F.softmax_cross_entropy(supernet(x, C, cells, nodes, **options), y))
    names = list(weights)
    grads = nn.grad([loss], [weights[k] for k in names])
    unrolled = {k: weights[k] - xi * (g + wd * weights[k] + nn.Variable.from_numpy_array(
                    0.9 * states[k].pstate['m'].d / lr)) for k, g in zip(names, grads)}
    xv, yv = (nn.Variable.from_numpy_array(v) for v in valid_batch)
    with nn.parameter_scope('exact_valid'):
        for k, v in everything.items():
            nn.parameter.set_parameter(k, unrolled.get(k, v))
        loss_val = F.mean(F.softmax_cross_entropy(supernet(xv, C, cells, nodes, **options), yv))
    result = nn.grad([loss_val], list(alphas.values()))
    F.sink(*result).forward()
    return np.concatenate([r.d.ravel() for r in result])


def alpha_grads(alphas):
    return np.concatenate([a.g.ravel() for a in alphas.values()])


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize('C, options', [(2, {}), (8, dict(partial_channels=4, edge_normalization=True))],
                         ids=['darts', 'pc-darts'])
def test_finite_difference_hypergradient_matches_exact_double_backward(monkeypatch, C, options):
    """The unrolled step and the finite-difference Hessian-vector product against nn.grad.

    ReLU and max pooling become softplus and average pooling here: at their kinks the gradient
    jumps, so a finite difference over a radius of 0.01 sees jumps that a second derivative
    (zero almost everywhere) does not; with smooth ops both must agree. The depthwise
    convolutions become grouped ones (same weights), which have a double backward. The exact
    reference uses the plain mixed op: nnabla's double backward of a BN whose gamma is computed
    (the folded op weight) misses a term (0.25 off), while the first-order gradients that the
    search uses agree (test_mixed_op_is_the_softmax_weighted_sum_of_all_eight_ops).
    """
    use_computed_parameters(monkeypatch)
    monkeypatch.setattr(F, 'relu', F.softplus)
    monkeypatch.setattr(F, 'max_pooling', F.average_pooling)
    monkeypatch.setattr(operations, 'depthwise', grouped_depthwise)
    xi, wd = 0.5, 3e-4
    graph, weights, alphas, solvers, train_batch, valid_batch = tiny_search_setup(C=C, **options)
    before = {k: p.d.copy() for k, p in weights.items()}
    unroller = Unroller(weights, solvers['weights'], wd, 0.9)
    unrolled_alpha_grads(graph, unroller, alphas, solvers, xi, train_batch, valid_batch)
    approx = alpha_grads(alphas)
    for k, p in weights.items():  # the weights are restored exactly
        assert np.array_equal(p.d, before[k]), k
    monkeypatch.setattr(model_search, 'mixed_op', plain_mixed_op)
    exact = exact_hypergradient(weights, alphas, solvers, xi, wd, train_batch, valid_batch, C, **options)
    forward_backward(graph, valid_batch, solvers)
    first_order = alpha_grads(alphas)
    assert rel(approx, exact) < 1e-2
    assert rel(first_order, exact) > 10 * rel(approx, exact)


def test_supernet_sizes_match_the_paper():
    nn.clear_parameters()
    supernet(nn.Variable((1, 3, 32, 32)), 16, 8, 7)
    weights, alphas = model_search.split_parameters(nn.get_parameters(grad_only=True))
    assert count_parameters(weights) == 1930618
    assert count_parameters(alphas) == 224
    assert sorted(a.shape for a in alphas.values()) == [(14, 8), (14, 8)]


def test_edge_order_is_the_alpha_row_order():
    assert darts_arch.edges(7)[:6] == [(0, 2), (1, 2), (0, 3), (1, 3), (2, 3), (0, 4)]
    assert len(darts_arch.edges(7)) == 14 and len(darts_arch.edges(5)) == 5


def softmax_rows(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_derive_picks_edges_by_softmax_weight_of_the_best_non_zero_op():
    nodes = 5  # intermediate nodes 2 and 3; edges 0->2, 1->2, 0->3, 1->3, 2->3
    a = np.zeros((5, 8))
    a[0] = [5, 5, 5, 5, 5, 5, 5, 0]     # 0->2: largest raw alpha, but a flat softmax (0.14)
    a[1] = [0, 0, 3, 0, 0, 0, 0, 0]     # 1->2: sep_conv_3x3 at 0.74
    a[2, 7] = 50                        # 0->3: the zero op dominates: weak edge
    a[2, 4] = 1
    a[3] = [0, 0, 0, 0, 0, 0, 2, 0]     # 1->3: identity
    a[4] = [0, 1.5, 0, 0, 0, 0, 0, 0]   # 2->3: dil_conv_5x5
    assert a[0].max() > a[1].max() and softmax_rows(a)[0, :7].max() < softmax_rows(a)[1, :7].max()
    arch = darts_arch.derive(a, a.copy(), nodes)
    assert arch['arch_normal'] == {'2': [[2, 1], [0, 0]], '3': [[6, 1], [1, 2]]}
    assert arch['arch_reduction'] == arch['arch_normal']


def test_derive_works_for_the_paper_size():
    rng = np.random.RandomState(3)
    arch = darts_arch.derive(rng.randn(14, 8), rng.randn(14, 8), 7)
    darts_arch.validate(arch)  # raises on anything malformed
    for cell in arch.values():
        for node, pairs in cell.items():
            assert pairs[0][1] != pairs[1][1] and all(op != 7 for op, _ in pairs)




def search(tmp_path, name, archive, *extra):
    """Run darts_search.py writing into tmp_path/name; returns (completed process, that folder)."""
    folder = tmp_path / name
    return run_cli('darts_search.py', [*SEARCH_TINY, '--dataset-path', archive, '-m', folder,
                                       '--model-arch-name', folder / 'arch.json', *extra]), folder


def read(path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def straight(tmp_path_factory, archive):
    """search(order) -> (process, folder) of a 2-epoch search with a checkpoint every 3 iterations,
    first order with the eigenvalue, or second order without (it would only repeat that check at
    four times the cost); each run once per session."""
    done = {}

    def get(order):
        if order not in done:
            hessian = () if order == 'False' else NO_EIGENVALUE
            done[order] = search(tmp_path_factory.mktemp('straight'), 'run', archive, '-e', '2', '-s', '3',
                                 '--second-order', order, *hessian)
            assert done[order][0].returncode == 0, done[order][0].stderr
        return done[order]
    return get


def test_search_cli_end_to_end_and_the_json_retrains(straight):
    proc, folder = straight('False')
    arch = read(folder / 'arch.json')
    assert set(arch) == {'arch_normal', 'arch_reduction'} and sorted(arch['arch_normal']) == ['2', '3']
    assert read(folder / 'arch_epoch_2.json') == arch
    alphas = read(folder / 'alphas.json')
    assert np.array(alphas['alpha_normal']).shape == (5, 8) and np.array(alphas['alpha_reduction']).shape == (5, 8)
    assert darts_arch.derive(np.array(alphas['alpha_normal']), np.array(alphas['alpha_reduction']), 5) == arch
    for name in ('Training-loss', 'Training-error', 'Validation-loss', 'Validation-error', 'Learning-rate'):
        assert [i for i, _ in read_series(folder, name)] == ['1', '2'], name
    assert 'ops at node 2:' in proc.stdout and 'darts_train.py' in proc.stdout
    for picture in ('normal_cell.png', 'reduction_cell.png', 'learning_curves.png'):
        assert (folder / picture).read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', picture
    check = train('--model-arch-name', folder / 'arch.json', '--num-nodes', '5', '--summary-only', '--num-cells', '3')
    assert check.returncode == 0 and 'trainable parameters:' in check.stdout, check.stderr


@pytest.fixture(scope='module')
def one_epoch(tmp_path_factory, archive):
    """{name: (process, folder)} of 1-epoch searches: the defaults with and without the eigenvalue,
    PC-DARTS's flags at their defaults, second order, another seed."""
    tmp = tmp_path_factory.mktemp('one_epoch')
    off = NO_EIGENVALUE  # once with the eigenvalue is enough
    runs = {name: search(tmp, name, archive, '-e', '1', *extra)
            for name, extra in (('eigenvalue', ()), ('off', off), ('second', ('--second-order', 'True', *off)),
                                ('seed', ('--seed', '1', *off)),
                                ('named', (*off, '--partial-channels', '1', '--edge-normalization', 'False',
                                           '--arch-warmup-epochs', '0')))}
    for proc, _ in runs.values():
        assert proc.returncode == 0, proc.stderr
    return runs


def test_search_is_seeded_and_the_orders_differ(one_epoch):
    alphas = {name: np.array(read(folder / 'alphas.json')['alpha_normal']) for name, (_, folder) in one_epoch.items()}
    # the Hessian eigenvalue (on by default) leaves the search bit for bit as without it: its passes
    # restore the alphas and touch no state a step reads (the comparisons of docs/methods.md run some
    # searches without it): the alphas, every parameter (BN running statistics too) and the solver states
    assert np.array_equal(alphas['eigenvalue'], alphas['off'])
    with_hessian, without = (sorted(one_epoch[name][1].glob('checkpoint_*'))[-1] for name in ('eigenvalue', 'off'))
    for name in ('params.h5', 'solver_weights.h5', 'solver_alphas.h5'):
        assert (with_hessian / name).read_bytes() == (without / name).read_bytes(), name
    assert (one_epoch['eigenvalue'][1] / 'Hessian-eigenvalue.series.txt').exists()
    assert not (one_epoch['off'][1] / 'Hessian-eigenvalue.series.txt').exists()
    assert not np.allclose(alphas['off'], alphas['second'], rtol=0, atol=1e-7)
    assert not np.allclose(alphas['off'], alphas['seed'], rtol=0, atol=1e-7)


def test_k_1_without_edge_normalisation_is_darts_bit_for_bit(one_epoch):
    """PC-DARTS's flags at their defaults: the same run as without them (two runs of one seed,
    so the search is repeatable too)."""
    a, b = one_epoch['off'][1], one_epoch['named'][1]
    assert (a / 'alphas.json').read_bytes() == (b / 'alphas.json').read_bytes()
    assert (a / 'arch.json').read_bytes() == (b / 'arch.json').read_bytes()


EIGENVALUE_SERIES = ('Hessian-eigenvalue', 'Hessian-vector-products')


@pytest.mark.parametrize('order', ['False', 'True'])
def test_search_stopped_and_resumed_ends_with_the_same_alphas(tmp_path, archive, order, straight):
    hessian = () if order == 'False' else NO_EIGENVALUE
    flags = ('-e', '2', '-s', '3', '--second-order', order, *hessian)
    _, a = straight(order)
    b = tmp_path / 'resumed'
    shutil.copytree(str(a), str(b))  # the same seeded run, in a folder of its own (a checkpoint holds no path)
    newest = sorted(b.glob('checkpoint_*'))[-1]
    shutil.rmtree(newest)  # back to the mid-epoch checkpoint, as if killed after it
    (b / 'arch.json').unlink()
    again, _ = search(tmp_path, 'resumed', archive, *flags, '--resume', 'True')
    assert again.returncode == 0, again.stderr
    assert read(a / 'alphas.json') == read(b / 'alphas.json')
    assert read(a / 'arch.json') == read(b / 'arch.json')
    for name in ('Training-loss', 'Validation-error', 'Learning-rate', 'Parameter-free-ops-normal',
                 'Parameter-free-ops-reduction', *(() if hessian else EIGENVALUE_SERIES)):
        assert (a / (name + '.series.txt')).read_text() == (b / (name + '.series.txt')).read_text(), name
        assert len((a / (name + '.series.txt')).read_text().split()) == 4, name  # two epochs


def test_search_refuses_bad_input_before_work(tmp_path, archive):
    proc, folder = search(tmp_path, 'bad', archive, '--second-order', 'maybe')
    assert one_line(proc) == "error: argument --second-order: expected True/False/1/0/yes/no, got 'maybe'"
    if not cuda_installed():
        one_line(search(tmp_path, 'ctx', archive, '-c', 'cudnn')[0], '--context cpu', 'nnabla-ext-cuda120')
    one_line(search(tmp_path, 'half', archive, '-t', 'half')[0], '--type-config half is for darts_train.py')
    for name, flags, fragments in (('big', ('-b', '64'), ('larger than',)),
                                   ('probe', ('--hessian-batches', '6'), ('--hessian-batches 6', '20 validation'))):
        proc, folder = search(tmp_path, name, archive, *flags)
        one_line(proc, *fragments)
        assert not list(folder.glob('*.series.txt'))


@pytest.mark.parametrize('stride', [1, 2])
def test_mixed_op_is_the_softmax_weighted_sum_of_all_eight_ops(stride):
    """Forward and backward against the plain formula sum_k softmax(alpha)_k op_k(x), the zero
    op included, with the same parameters and inputs: each op on its own input node (its own
    ReLU), its output (after a BN for the pools) times its weight by broadcasting multiply."""
    nn.clear_parameters()
    rng = np.random.RandomState(stride)
    x = nn.Variable.from_numpy_array(rng.randn(2, 4, 8, 8).astype(np.float32), need_grad=True)
    alpha = nn.Variable.from_numpy_array(rng.randn(1, 8).astype(np.float32), need_grad=True)
    bn = functools.partial(operations.batch_norm, affine=False, test=False)
    with nn.parameter_scope('mixed'):
        fast = model_search.mixed_op(operations.NodeOutput(x), model_search.op_weights(alpha, operations.DARTS)[0], 4,
                                     stride, bn, operations.DARTS)
    with nn.parameter_scope('mixed'):  # the same parameters
        w = F.softmax(alpha, axis=1)
        plain = plain_mixed_op(operations.NodeOutput(x), [F.slice(w, (0, k), (1, k + 1)) for k in range(8)], 4, stride, bn)
    results = []
    probe = nn.Variable.from_numpy_array(rng.randn(*fast.shape).astype(np.float32))
    for out in (fast, plain):
        loss = F.sum(out * probe)
        x.g, alpha.g = 0, 0
        for p in nn.get_parameters().values():
            p.g = 0
        loss.forward()
        loss.backward()
        results.append((out.d.copy(), x.g.copy(), alpha.g.copy(),
                        {k: p.g.copy() for k, p in nn.get_parameters().items()}))
    (o1, gx1, ga1, gp1), (o2, gx2, ga2, gp2) = results
    assert o1.shape == (2, 4, 8 // stride, 8 // stride)
    np.testing.assert_allclose(o1, o2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gx1, gx2, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ga1, ga2, rtol=1e-4, atol=1e-6)
    for k in gp1:
        np.testing.assert_allclose(gp1[k], gp2[k], rtol=1e-4, atol=1e-6, err_msg=k)
