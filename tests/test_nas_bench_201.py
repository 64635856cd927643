"""The NAS-Bench-201 space: its networks against an independent count and the published range, the
table and its refusals, the cell string, the derivation, the recipe, and both jobs end to end
(CIFAR-10 and CIFAR-100), resumed, with the other options of the search."""
import gzip
import itertools
import json
import re
import shutil

import numpy as np
import nnabla as nn
import pytest

import darts_train
import genotype
import model_eval
import spaces
from args import SEARCH, TRAIN, parse, resume_config
from errors import UserError
from helpers import NO_EIGENVALUE, one_line, read_series, run_cli, train, write_cifar100
from spaces.nas_bench_201 import arch as cell_string
from spaces.nas_bench_201.network import network, supernet
from spaces.nas_bench_201.table import EMBEDDED, read
from spaces.space import Net
from tasks.classification import CIFAR10
from test_resume_config import write_checkpoint

OPS = ('none', 'skip_connect', 'nor_conv_1x1', 'nor_conv_3x3', 'avg_pool_3x3')  # the paper's, written out here
SMALLEST = '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'
LARGEST = '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|'
ALL_SKIP = '|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|'
BEST_CIFAR10 = '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|'
MIXED = '|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|'
SEARCH_NB201 = ['-c', 'cpu', '--search-space', 'nas-bench-201', '--num-cells', '1', '--output-filter', '4', '-b', '4']
TRAIN_NB201 = ['-c', 'cpu', '--num-cells', '1', '--output-filter', '4', '-b', '4']
EDGES = [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]


@pytest.fixture(scope='module')
def space():
    return spaces.get('nas-bench-201')


def ops_of(text):
    """The op of each edge of EDGES, read from the string by hand."""
    return [entry.split('~')[0] for node in text.split('+') for entry in node.strip('|').split('|')]


def expected_counts(text, C=16, N=5, classes=10, size=32):
    """(trainable parameters, multiply-adds per image) of the network of ``text``, counted by hand:
    stem conv + BN, the convolutions of the cells' ops with their BNs (affine), two residual blocks
    (two 3x3 convs with BNs, a 1x1 shortcut), the last BN and the classifier (multiply-adds
    without its bias, as model_eval.multiply_adds counts)."""
    params, madds = 27 * C + 2 * C, size * size * C * 27
    for stage in range(3):
        c, side = C * 2 ** stage, size // 2 ** stage
        if stage:
            params += 9 * c // 2 * c + 2 * c + 9 * c * c + 2 * c + c // 2 * c
            madds += side * side * c * (9 * c // 2 + 9 * c + c // 2)
        for op in ops_of(text):
            k = {'nor_conv_1x1': 1, 'nor_conv_3x3': 9}.get(op, 0)
            params += N * (k * c * c + 2 * c * bool(k))
            madds += N * side * side * c * k * c
    return params + 2 * 4 * C + 4 * C * classes + classes, madds + 4 * C * classes


@pytest.mark.parametrize('text', [SMALLEST, LARGEST, ALL_SKIP, MIXED, BEST_CIFAR10])
def test_parameters_and_multiply_adds_are_the_hand_counted_ones(text, space, fresh_parameters):
    x = nn.Variable((1, 3, 32, 32))
    logits, aux = network(x, text, 16, 5)
    assert logits.shape == (1, 10) and aux is None
    counts = model_eval.count_parameters(nn.get_parameters(grad_only=True)), model_eval.multiply_adds(logits)
    assert counts == expected_counts(text)


def test_the_published_range_of_the_space():
    """NAS-Bench-201: 0.07 M to 1.53 M parameters, 7.78 M to 220.11 M FLOPs (C=16, N=5, CIFAR-10); its
    counter adds the classifier's 10 bias terms to the multiply-adds (7.78305 M, 220.11969 M)."""
    assert expected_counts(SMALLEST) == (73306, 7783040)
    assert expected_counts(LARGEST) == (1531546, 220119680)


def test_the_network_s_shapes(fresh_parameters):
    x = nn.Variable((2, 3, 32, 32))
    logits, aux = network(x, MIXED, 8, 2, 100, auxiliary=True)
    assert logits.shape == aux.shape == (2, 100)
    params = nn.get_parameters(grad_only=True)
    assert params['stem/conv/conv/W'].shape == (8, 3, 3, 3)
    assert params['block1/a/conv/conv/W'].shape == (16, 8, 3, 3) and params['block1/shortcut/conv/conv/W'].shape == (16, 8, 1, 1)
    assert params['block2/b/conv/conv/W'].shape == (32, 32, 3, 3)
    assert params['cell1/edge2_3/conv/conv/W'].shape == (8, 8, 3, 3) and params['cell5/edge1_3/conv/conv/W'].shape == (32, 32, 1, 1)
    assert params['classifier/affine/W'].shape == (32, 100) and 'last/bn/bn/gamma' in params
    assert params['aux/conv1/conv/W'].shape == (128, 32, 1, 1)  # on the second block's 8x8 maps
    assert not any(k.startswith('cell0/edge0_2') for k in params)  # none: nothing built


def test_the_supernet_shares_one_alpha_matrix_and_has_no_bn_affine_in_its_cells(fresh_parameters):
    logits = supernet(nn.Variable((1, 3, 32, 32)), 16, 5)
    params = nn.get_parameters(grad_only=True)
    alphas = {k: v for k, v in params.items() if k.startswith('alpha/')}
    assert {k: v.shape for k, v in alphas.items()} == {'alpha/alpha_cell': (6, 5)}
    cells = {k: v for k, v in params.items() if k.startswith('cell')}
    assert not any(k.endswith(('/gamma', '/beta')) for k in cells)
    assert {k.split('/')[1] for k in cells} == {'edge{}_{}'.format(i, j) for i, j in EDGES}
    # every edge of every cell: both convolutions, no BN affine; the rest as the network of the cell of all ops
    weights = model_eval.count_parameters({k: v for k, v in params.items() if not k.startswith('alpha/')})
    largest, _ = expected_counts(LARGEST)
    cell_convs = sum(5 * 6 * (c * c + 9 * c * c) for c in (16, 32, 64))
    cell_bns_of_largest = sum(5 * 6 * 2 * c for c in (16, 32, 64))
    cell_convs_of_largest = sum(5 * 6 * 9 * c * c for c in (16, 32, 64))
    assert weights == largest - cell_bns_of_largest - cell_convs_of_largest + cell_convs
    assert logits.shape == (1, 10)


def test_the_embedded_table():
    table, best = read()
    assert len(table) == 15625 and [e.index for e in table.values()] == list(range(15625))
    assert [round(b, 2) for b in best] == [94.37, 73.51, 47.31]
    assert table[ALL_SKIP].index == 1835 and [round(a, 2) for a in table[ALL_SKIP].accuracies] == [54.30, 15.61, 16.32]
    assert round(table[BEST_CIFAR10].accuracies[0], 2) == 94.37
    assert set(itertools.product(OPS, repeat=6)) == {tuple(ops_of(text)) for text in table}


def table_text():
    with gzip.open(EMBEDDED, 'rt') as f:
        return f.read()


@pytest.mark.parametrize('edit, fragment', [
    (lambda text: text.replace('index,arch', 'id,arch', 1), 'its columns are id,arch'),
    (lambda text: '\n'.join(text.splitlines()[:-5]) + '\n', 'holds 15620 cells, the space 15625: is it truncated'),
    (lambda text: text.replace(text.splitlines()[2].split(',')[1], text.splitlines()[1].split(',')[1]),
     'is there twice'),
    (lambda text: text.replace(',54.2967,', ',x,'), 'are not numbers'),
    (lambda text: text.replace(',54.2967,', ',154.2967,'), 'are not percentages'),
    (lambda text: text.replace('skip_connect~2|,54.2967', 'skip~2|,54.2967'), "unknown op 'skip'"),
], ids=['columns', 'rows missing', 'a cell twice', 'not a number', 'not a percentage', 'bad cell'])
def test_a_bad_table_is_refused_in_one_line(edit, fragment, tmp_path):
    path = tmp_path / 'table.csv'
    path.write_text(edit(table_text()))
    with pytest.raises(UserError, match=fragment.replace('(', r'\(')):
        read(str(path))


def test_a_missing_or_truncated_table_is_refused(tmp_path):
    with pytest.raises(UserError, match='it does not exist'):
        read(str(tmp_path / 'none.csv.gz'))
    with open(EMBEDDED, 'rb') as f:
        data = f.read()
    cut = tmp_path / 'cut.csv.gz'
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match='damaged or truncated'):
        read(str(cut))
    res = run_cli('darts_train.py', ['--model-arch-name', MIXED, '--summary-only', '--benchmark-table', cut])
    one_line(res, str(cut), 'damaged or truncated')


def test_another_table_with_the_same_columns_is_taken(tmp_path, space):
    other = tmp_path / 'other.csv'
    other.write_text(table_text().replace(',54.2967,15.6067,16.3222', ',50.0000,10.0000,10.0000'))
    assert spaces.get('nas-bench-201', benchmark_table=str(other)).entry(ALL_SKIP).accuracies == (50.0, 10.0, 10.0)


def test_the_string_round_trip():
    table, _ = read()
    for text in table:
        assert cell_string.to_string(cell_string.parse(text)) == text
    assert cell_string.parse(MIXED) == ops_of(MIXED)
    rng = np.random.RandomState(0)
    for _ in range(20):
        ops = [OPS[k] for k in rng.randint(0, 5, 6)]
        assert cell_string.parse(cell_string.to_string(ops)) == ops


def test_the_derivation_takes_every_edge_s_argmax_none_included():
    alpha = np.zeros((6, 5))
    for e, k in enumerate([3, 0, 4, 1, 0, 2]):  # conv3x3, none, pool, skip, none, conv1x1
        alpha[e, k] = 1.0 + e / 10
    assert cell_string.derive(alpha) == '|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|'
    skips = np.zeros((6, 5))
    skips[:, 1] = [3, 1, 2, 4, 5, 6]  # all skip_connect, 0->2 the weakest, then 1->2
    skips[:, 3] = 0.5
    skips[2, 4] = 0.7
    assert cell_string.derive(skips, max_skip_connect=4) == \
        '|skip_connect~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|skip_connect~1|skip_connect~2|'
    assert cell_string.derive(skips, max_skip_connect=6) == ALL_SKIP


@pytest.mark.parametrize('text, fragment', [
    ('|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|', "unknown op 'nor_conv_5x5'"),
    ('|none~0|+|none~0|none~1|', 'has 2 nodes'),
    ('|none~0|+|none~0|+|none~0|none~1|none~2|', 'node 2 (\'|none~0|\') has 1 edge, expected 2'),
    ('|none~0|+|none~0|none~2|+|none~0|none~1|none~2|', "edge 1 reads node '2', expected node 1"),
    ('|none~0||none~0|none~1|+|none~0|none~1|none~2|', 'has 2 nodes'),
    ('|none~0|+|none~0|none~1|+|none~0|none~1|none~2|x', "must start and end with '|'"),
    ('|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+', 'has 4 nodes'),
], ids=['unknown op', 'two nodes', 'node count', 'input index', 'missing +', 'text after', 'trailing +'])
def test_a_malformed_cell_string_is_refused_naming_what_is_wrong(text, fragment):
    with pytest.raises(UserError, match=re.escape(fragment)):
        cell_string.parse(text)


def test_a_malformed_cell_string_is_one_line_before_any_work(tmp_path):
    for program in ('darts_train.py', 'genotype.py'):
        argv = ['plot', '|none~0|+|none~0|none~9|'] if program == 'genotype.py' else [
            '--model-arch-name', '|none~0|+|none~0|none~9|', '--dataset-path', tmp_path / 'none.tar.gz', '-m',
            tmp_path / 'm']
        one_line(run_cli(program, argv), 'has 2 nodes')
    assert not (tmp_path / 'm').exists()


def test_an_arch_of_one_space_is_refused_by_the_other_and_the_space_s_flags_are_checked(tmp_path):
    one_line(train('--search-space', 'darts', '--model-arch-name', MIXED, '--summary-only'),
             'is an arch of the NAS-Bench-201 space', '--search-space darts')
    one_line(run_cli('darts_search.py', SEARCH_NB201 + ['--num-nodes', '5', '-m', tmp_path / 'm']),
             '--num-nodes means nothing on --search-space nas-bench-201')
    arch = tmp_path / 'arch.json'
    for flags, fragment in (
            (['--search-space', 'nas-bench-201', '--model-arch-name', 'DARTS_V2'],
             'DARTS_V2 is an arch of the DARTS space, and this run is on --search-space nas-bench-201'),
            (['--model-arch-name', 'DARTS_V2', '--benchmark-table', 'x.csv'],
             '--benchmark-table means nothing on --search-space darts'),
            (['--model-arch-name', MIXED, '--dataset', 'imagenet'], 'has only its CIFAR network'),
            (['--model-arch-name', MIXED, '--dataset', 'folder', '--image-size', '96'], 'has only its CIFAR network')):
        with pytest.raises(UserError, match=re.escape(fragment)):
            parse(TRAIN, flags)
    for content, fragment in (({'search_space': 'nas-bench-201', 'arch': MIXED, 'index': 3},
                               'index 3 is not the index of its cell'),
                              ({'search_space': 'nas-bench-301', 'arch': MIXED}, 'search_space "nas-bench-301" is not one of'),
                              ({'search_space': 'nas-bench-201', 'cell': MIXED}, "unknown key 'cell'"),
                              ({'search_space': 'nas-bench-201'}, 'the cell string "arch" is missing')):
        arch.write_text(json.dumps(content))
        with pytest.raises(UserError, match=re.escape(fragment)):
            genotype.load(str(arch), spaces.get('nas-bench-201'))
    assert not (tmp_path / 'm').exists()


def test_the_recipe_is_nas_bench_201_s_and_every_flag_overrides_it():
    args = parse(TRAIN, ['--model-arch-name', MIXED])
    assert args.search_space == 'nas-bench-201'
    recipe = dict(epoch=200, batch_size=256, model_lr=0.1, min_model_lr=0.0, lr_schedule='cosine', nesterov=True,
                  momentum=0.9, weight_decay_model=5e-4, cutout=False, auxiliary=False, dropout_rate=0.0, num_cells=5,
                  output_filter=16, additional_filters_on_retrain=0)
    assert {k: getattr(args, k) for k in recipe} == recipe
    given = parse(TRAIN, ['--model-arch-name', MIXED, '-e', '3', '-b', '8', '--model-lr', '0.05', '--nesterov', 'False',
                          '--weight-decay-model', '1e-4', '--cutout', 'True', '--auxiliary', 'True', '--dropout-rate',
                          '0.1', '--num-cells', '2', '--output-filter', '8', '-f', '4'])
    assert (given.epoch, given.batch_size, given.model_lr, given.nesterov, given.weight_decay_model, given.cutout,
            given.auxiliary, given.dropout_rate, given.num_cells, given.output_filter,
            given.additional_filters_on_retrain) == (3, 8, 0.05, False, 1e-4, True, True, 0.1, 2, 8, 4)
    search = parse(SEARCH, ['--search-space', 'nas-bench-201'])
    assert (search.num_cells, search.output_filter, search.weight_decay_model, search.nesterov, search.epoch,
            search.model_lr, search.min_model_lr) == (5, 16, 5e-4, True, 50, 0.025, 0.001)
    darts = parse(SEARCH, [])
    assert (darts.num_cells, darts.weight_decay_model, darts.nesterov, darts.num_nodes) == (8, 3e-4, False, 7)


def test_summary_only_prints_the_counts_and_the_table_of_any_cell():
    res = train('--model-arch-name', LARGEST, '--summary-only')
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert 'trainable parameters: 1531546 (aux head: off)' in lines
    assert 'multiply-adds: 220119680 per 32x32 image' in lines
    assert any(line.startswith('NAS-Bench-201 #') and 'CIFAR-10 ' in line and '(best in the space 94.37 / 73.51 / '
               '47.31)' in line for line in lines)


def search(tmp_path, name, archive, *extra):
    folder = tmp_path / name
    return run_cli('darts_search.py', SEARCH_NB201 + ['--dataset-path', archive, '-m', folder, '--model-arch-name',
                                                      folder / 'arch.json', *extra]), folder


def read_json(path):
    with open(str(path)) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def searched(tmp_path_factory, archive):
    """A 2-epoch search with a checkpoint every 3 iterations, the eigenvalue and TensorBoard."""
    tmp = tmp_path_factory.mktemp('nb201')
    res, folder = search(tmp, 'run', archive, '-e', '2', '-s', '3', '--tensorboard', tmp / 'tb')
    assert res.returncode == 0, res.stderr
    return res, folder, tmp


def test_a_search_logs_the_table_accuracy_of_the_cell_of_every_epoch(searched, space):
    res, folder, tmp = searched
    arch = read_json(folder / 'arch.json')
    assert set(arch) == {'search_space', 'arch', 'index'} and arch['search_space'] == 'nas-bench-201'
    assert arch == space.arch_of(arch['arch'])
    alphas = read_json(folder / 'alphas.json')
    assert arch == space.derive({'alpha_cell': np.array(alphas['alpha_cell'])})
    for epoch in (1, 2):
        cell = read_json(folder / 'arch_epoch_{}.json'.format(epoch))['arch']
        for dataset, accuracy in zip(('CIFAR-10', 'CIFAR-100', 'ImageNet16-120'), space.entry(cell).accuracies):
            index, value = read_series(folder, 'Table-accuracy-' + dataset)[epoch - 1]
            assert index == str(epoch) and float(value) == pytest.approx(accuracy, abs=1e-3)
    results = read_json(folder / 'results.json')
    assert results['nas_bench_201_index'] == arch['index'] and results['epochs'] == 2
    assert results['cifar10_test_acc'] == space.entry(arch['arch']).accuracies[0]
    line = next(line for line in res.stdout.splitlines() if line.startswith('NAS-Bench-201 #'))
    assert line == space.accuracy_line(arch) and 'CIFAR-10 {:.2f} %'.format(results['cifar10_test_acc']) in line
    for picture in ('cell.png', 'learning_curves.png', 'alphas.png'):
        assert (folder / picture).read_bytes()[:4] == b'\x89PNG', picture
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(tmp / 'tb')).Reload()
    tag = 'NAS-Bench-201-test-accuracy-of-the-derived-cell/Table-accuracy-CIFAR-10'
    assert [round(e.value, 3) for e in events.Scalars(tag)] == [
        round(float(v), 3) for _, v in read_series(folder, 'Table-accuracy-CIFAR-10')]


def test_the_search_s_hint_retrains_its_cell(searched, archive):
    res, folder, tmp = searched
    lines = res.stdout.splitlines()
    command = lines[lines.index(next(l for l in lines if l.endswith('retrain it with:'))) + 1].split()
    assert '--search-space' not in command and '--num-nodes' not in command  # the file says its space
    done = train(*command[2:], '-c', 'cpu', *TRAIN_NB201[2:], '-e', '1', '--train-images', '8', '--test-images', '8',
                 '-m', tmp / 'retrained', cwd=tmp)
    assert done.returncode == 0, done.stderr
    results = read_json(tmp / 'retrained' / 'results.json')
    assert results['search_space'] == 'nas-bench-201' and results['nas_bench_201_index'] == \
        read_json(folder / 'arch.json')['index'] and 0 <= results['test_error'] <= 1
    assert 'test error: ' in done.stdout


def test_a_stopped_search_resumes_to_the_same_end(searched, archive, tmp_path):
    _, a, _ = searched
    b = tmp_path / 'resumed'
    shutil.copytree(str(a), str(b))
    shutil.rmtree(str(sorted(b.glob('checkpoint_*'))[-1]))  # back to the mid-epoch checkpoint
    (b / 'arch.json').unlink()
    again, _ = search(tmp_path, 'resumed', archive, '-e', '2', '-s', '3', '--resume', 'True')
    assert again.returncode == 0, again.stderr
    assert read_json(a / 'alphas.json') == read_json(b / 'alphas.json')
    assert read_json(a / 'arch.json') == read_json(b / 'arch.json')
    for name in ('Training-loss', 'Validation-error', 'Table-accuracy-CIFAR-100', 'Hessian-eigenvalue'):
        assert (a / (name + '.series.txt')).read_text() == (b / (name + '.series.txt')).read_text(), name


def test_a_resume_in_another_space_is_refused(tmp_path):
    folder = tmp_path / 'm'
    write_checkpoint(folder, resume_config(SEARCH, parse(SEARCH, SEARCH_NB201)))
    res = run_cli('darts_search.py', ['-c', 'cpu', '--num-cells', '1', '--output-filter', '4', '-b', '4', '-m', folder,
                                      '--model-arch-name', folder / 'a.json', '--resume'])
    one_line(res, '--resume', 'search_space = "nas-bench-201", this run has "darts"')


def test_second_order_partial_channels_and_edge_normalisation_on_cifar100(tmp_path):
    data = write_cifar100(tmp_path / 'c100.tar.gz', 16, 8)
    res, folder = search(tmp_path, 'c100', data, '-e', '1', *NO_EIGENVALUE, '--dataset', 'cifar100',
                         '--second-order', 'True', '--partial-channels', '2', '--edge-normalization', 'True')
    assert res.returncode == 0, res.stderr
    alphas = read_json(folder / 'alphas.json')
    assert np.array(alphas['alpha_cell']).shape == (6, 5) and np.array(alphas['beta_cell']).shape == (6, 1)
    derived = run_cli('genotype.py', ['derive', folder / 'alphas.json', '--out', tmp_path / 'derived.json'])
    assert derived.returncode == 0, derived.stderr
    assert read_json(tmp_path / 'derived.json') == read_json(folder / 'arch.json')
    summary = train('--model-arch-name', folder / 'arch.json', '--dataset', 'cifar100', '--summary-only')
    assert summary.returncode == 0 and 'images of 100 classes (cifar100)' in summary.stdout, summary.stderr
    done = train('--model-arch-name', folder / 'arch.json', *TRAIN_NB201, '--dataset', 'cifar100', '--dataset-path',
                 data, '-e', '1', '-m', tmp_path / 'retrained')
    assert done.returncode == 0, done.stderr
    results = read_json(tmp_path / 'retrained' / 'results.json')
    assert results['dataset'] == 'cifar100' and 'test_error_top5' in results


def test_the_retraining_graph_takes_the_recipe_s_nesterov_solver(fresh_parameters):
    args = parse(TRAIN, ['--model-arch-name', MIXED] + TRAIN_NB201[2:])
    space = spaces.get('nas-bench-201')
    _, solver, _, _ = darts_train.setup(space, genotype.load(MIXED, space), args, CIFAR10)
    assert solver.name == 'Nesterov' and args.nesterov
    net = Net(4, 1, CIFAR10)
    assert model_eval.build_test(space, genotype.load(MIXED, space), net, 2)['logits'].shape == (2, 10)
