"""darts_seeds.py: searches over seeds, in parallel and resumed, and the report (table, mean ± std,
picture) on NAS-Bench-201 and on the DARTS space."""
import json

import numpy as np
import pytest

import darts_seeds
import genotype
import spaces
from helpers import NO_EIGENVALUE, SEARCH_TINY, one_line, run_cli
from spaces.darts_cnn import arch as darts_arch
from spaces.nas_bench_201.arch import to_string
from test_nas_bench_201 import SEARCH_NB201

RUN = SEARCH_NB201 + ['-e', '2', *NO_EIGENVALUE]


def seeds(*argv, **kwargs):
    return run_cli('darts_seeds.py', argv, **kwargs)


@pytest.fixture(scope='module')
def report(tmp_path_factory, archive):
    out = tmp_path_factory.mktemp('seeds') / 'report'
    res = seeds('run', '--seeds', '0', '1', '--jobs', '2', '--out', out, '--', *RUN, '--dataset-path', archive)
    assert res.returncode == 0, res.stdout + res.stderr
    return res, out


def test_the_report_has_a_row_per_seed_and_the_mean_and_std_of_the_table_accuracies(report):
    res, out = report
    space = spaces.get('nas-bench-201')
    results = [json.loads((out / 'seed_{}'.format(s) / 'results.json').read_text()) for s in (0, 1)]
    archs = [json.loads((out / 'seed_{}'.format(s) / 'arch.json').read_text()) for s in (0, 1)]
    text = (out / 'report.md').read_text()
    for seed, arch, r in zip((0, 1), archs, results):
        assert r['cifar10_test_acc'] == space.entry(arch['arch']).accuracies[0]
        assert '| {} | `{}` | {} | {:.2f} | {:.2f} | {:.2f} |'.format(
            seed, arch['arch'].replace('|', '\\|'), arch['index'], r['cifar10_test_acc'], r['cifar100_test_acc'],
            r['imagenet16_120_test_acc']) in text
    c10 = [r['cifar10_test_acc'] for r in results]
    summary = json.loads((out / 'report.json').read_text())['mean_std']['cifar10_test_acc']
    assert summary['mean'] == pytest.approx(np.mean(c10)) and summary['std'] == pytest.approx(np.std(c10, ddof=1))
    assert '| mean ± std | 2 searches |  | {:.2f} ± {:.2f} |'.format(np.mean(c10), np.std(c10, ddof=1)) in text
    assert (out / 'seeds.png').read_bytes()[:4] == b'\x89PNG'
    assert 'seed 0: started' in res.stdout and 'seed 1: done' in res.stdout
    assert (out / 'seed_1' / 'search.log').read_text().count('epoch 2/2') >= 1


def test_a_second_run_keeps_the_finished_seeds_and_runs_the_new_one(report, archive):
    _, out = report
    before = (out / 'seed_0' / 'alphas.json').read_bytes()
    res = seeds('run', '--seeds', '0', '2', '--jobs', '1', '--out', out, '--', *RUN, '--dataset-path', archive)
    assert res.returncode == 0, res.stderr
    assert 'seed 0: finished before, kept' in res.stdout and 'seed 2: started' in res.stdout
    assert 'waits' not in res.stdout
    assert (out / 'seed_0' / 'alphas.json').read_bytes() == before
    assert '2 searches' in (out / 'report.md').read_text()


def test_a_seed_beyond_the_jobs_starts_when_one_is_done(archive, tmp_path):
    res = seeds('run', '--seeds', '3', '4', '--jobs', '1', '--out', tmp_path / 'out', '--', *RUN,
                '--dataset-path', archive, '-e', '1')
    assert res.returncode == 0, res.stderr
    lines = [line.split(' (')[0] for line in res.stdout.splitlines() if line.startswith('seed ')]
    assert lines == ['seed 4: waits for one of the 1 jobs', 'seed 3: started', 'seed 3: done', 'seed 4: started',
                     'seed 4: done']


def test_the_report_of_darts_searches_gives_their_validation_errors(tmp_path, archive):
    folders = []
    for seed in (3, 4):
        folder = tmp_path / 's{}'.format(seed)
        res = run_cli('darts_search.py', SEARCH_TINY + NO_EIGENVALUE + [
            '-e', '1', '--num-cells', '1', '--seed', seed, '--dataset-path', archive, '-m', folder,
            '--model-arch-name', folder / 'arch.json'])
        assert res.returncode == 0, res.stderr
        folders.append(folder)
    res = seeds('report', *folders, '--out', tmp_path / 'r')
    assert res.returncode == 0, res.stderr
    text = (tmp_path / 'r' / 'report.md').read_text()
    errors = [json.loads((f / 'results.json').read_text())['validation_error'] for f in folders]
    assert text.startswith('# DARTS searches over 2 seeds')
    assert '| 3 | `{}` | {:.2f} |'.format(json.dumps(json.loads((folders[0] / 'arch.json').read_text()),
                                                    separators=(',', ':')), errors[0]) in text
    assert '{:.2f} ± {:.2f}'.format(np.mean(errors), np.std(errors, ddof=1)) in text


def test_bad_input_is_one_line_before_any_search(tmp_path, archive):
    out = tmp_path / 'out'
    one_line(seeds('run', '--seeds', '0', '1', '--out', out, '--', *RUN, '-m', tmp_path / 'x'),
             '-m is set by darts_seeds.py for each seed')
    one_line(seeds('run', '--seeds', '0', '0', '--out', out, '--', *RUN), '--seeds holds a seed twice')
    one_line(seeds('run', '--seeds', '0', '--out', out, '--', *RUN, '--num-nodes', '5'),
             '--num-nodes means nothing on --search-space nas-bench-201')
    one_line(seeds('run', '--seeds', '0', '--out', out, '--', *RUN, '--benchmark-table', tmp_path / 'no.csv'),
             'cannot read benchmark table')
    one_line(seeds('report', tmp_path, '--out', out), 'holds no finished search')
    assert not out.exists()


def one_more_search(folder, archive, *flags):
    """Run seed 0 of NAS-Bench-201's tiny search with ``flags`` into ``folder``; its seed folder."""
    res = seeds('run', '--seeds', '0', '--out', folder, '--', *RUN, '--dataset-path', archive, *flags)
    assert res.returncode == 0, res.stderr
    return folder / 'seed_0'


def test_the_report_of_several_methods_gives_a_mean_and_std_per_method(report, archive, tmp_path):
    _, out = report
    beta = one_more_search(tmp_path / 'beta', archive, '--method', 'beta-darts')
    both = tmp_path / 'both'
    res = seeds('report', out / 'seed_0', out / 'seed_1', beta, '--out', both)
    assert res.returncode == 0, res.stderr
    text = (both / 'report.md').read_text()
    assert text.count('| darts | 0 |') == 1 and text.count('| darts | 1 |') == 1 and '| beta-darts | 0 |' in text
    assert '| darts | mean ± std | 2 searches |' in text and '| beta-darts | mean ± std | 1 searches |' in text
    report_json = json.loads((both / 'report.json').read_text())
    assert set(report_json['mean_std']) == {'darts', 'beta-darts'}
    assert [s['method'] for s in report_json['searches']] == ['darts', 'darts', 'beta-darts']


def test_the_cells_multiply_adds_are_the_hand_counts_and_the_front_is_undominated():
    counts = darts_seeds.cell_multiply_adds(spaces.get('nas-bench-201'))
    assert len(counts) == 15625
    assert counts[to_string(['none'] * 6)] == 7783040 and counts[to_string(['nor_conv_3x3'] * 6)] == 220119680
    points = [(1, 50), (2, 40), (2, 60), (3, 60), (4, 70), (0.5, 10)]
    assert darts_seeds.pareto_front(points) == [(0.5, 10), (1, 50), (2, 60), (4, 70)]


def test_pareto_draws_a_cost_sweep_and_refuses_darts_searches(report, archive, tmp_path):
    _, out = report
    cost = one_more_search(tmp_path / 'cost', archive, '--cost-weight', '2')
    picture = tmp_path / 'pareto.png'
    res = seeds('pareto', out / 'seed_0', cost, '--out', picture)
    assert res.returncode == 0, res.stderr
    assert picture.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    lines = [line for line in res.stdout.splitlines() if line.startswith('λ = ')]
    assert [line.split(':')[0] for line in lines] == ['λ = 0', 'λ = 2']
    darts = tmp_path / 'darts'  # a finished search of the DARTS space, as its files say
    darts.mkdir()
    genotype.save(darts_arch.PAPER_ARCHS['DARTS_V2'], str(darts / 'arch.json'), spaces.get('darts'))
    (darts / 'results.json').write_text(json.dumps({'arch': str(darts / 'arch.json'), 'search_space': 'darts'}))
    one_line(seeds('pareto', darts, '--out', tmp_path / 'p.png'), 'pareto draws NAS-Bench-201 searches only')
