"""Searches over seeds and their report: how much a search's result varies from seed to seed.

    python darts_seeds.py run --seeds 0 1 2 --out seeds.report [--jobs J] -- DARTS_SEARCH_FLAGS...
    python darts_seeds.py report SEARCH_FOLDER... --out seeds.report
    python darts_seeds.py pareto SEARCH_FOLDER... --out pareto.png

``run`` starts darts_search.py once per seed, each into OUT/seed_<s>/ (its monitor folder, its
arch.json, its output in search.log), J at a time (default: one per core on the CPU, one after
the other on a GPU); a seed whose folder already holds a finished search is kept, one stopped
on the way is resumed. It then writes the report of the seeds' folders. ``report`` writes the
report of any finished search folders:

- OUT/report.md and OUT/report.json: a row per search (its seed, the cell it found and, on
  NAS-Bench-201, the cell's index and its table accuracies; on the DARTS space, which has no
  table, its last validation error), then the mean and standard deviation over the searches;
  searches of several methods (--method) get a row and a mean ± std per method;
- OUT/seeds.png: per epoch, the table accuracy on CIFAR-10 of the cell derived at that epoch
  (NAS-Bench-201; a collapse shows as a fall towards 54.30 %, the cell of skip connections), or
  the validation error (DARTS), one line per search.

``pareto`` draws the cost sweep of NAS-Bench-201 searches (--cost-weight): every cell of the
table as a grey point, its multiply-adds (the search's own count, methods.cost, on the table's
network: C=16, N=5, CIFAR-10) against its CIFAR-10 accuracy, the Pareto front of the table, and
the cells the searches found, one colour per cost weight.
"""
import argparse
import concurrent.futures
import json
import os
import subprocess
import sys

import numpy as np
import nnabla as nn

import checkpoint
import methods
import spaces
from args import SEARCH, parse, space_of
from errors import Parser, UserError, run
from files import check_output, write_atomic, write_json
from methods.cost import op_costs
from model_search import search_graph
from plots import drawn, pareto_picture, read_series, seed_curves
from spaces.nas_bench_201 import BOTH, TABLE_SERIES
from spaces.nas_bench_201.arch import EDGES, OPS, parse as parse_cell, to_string
from spaces.nas_bench_201.table import DATASETS
from spaces.space import Net
from tasks.classification import CIFAR10

HERE = os.path.dirname(os.path.abspath(__file__))
OWN_FLAGS = ('--seed', '-m', '--monitor-path', '--model-arch-name', '-o', '--model-save-path', '--resume')


def seed_folder(out, seed):
    return os.path.join(out, 'seed_{}'.format(seed))


def search_command(flags, out, seed):
    """The darts_search.py command of ``seed``: ``flags`` and the seed's folder, resumed where it stopped."""
    folder = seed_folder(out, seed)
    command = [sys.executable, os.path.join(HERE, 'darts_search.py')] + flags + [
        '--seed', str(seed), '-m', folder, '--model-arch-name', os.path.join(folder, 'arch.json')]
    return command + (['--resume', 'True'] if checkpoint.checkpoints(folder) else [])


def finished(folder):
    """Whether ``folder`` holds a finished search (its results.json)."""
    return os.path.isfile(os.path.join(folder, 'results.json'))


def run_search(seed, command, folder):
    """Run one search with its output into folder/search.log, saying when it starts (a seed may
    first wait for a free job) and how it ended; returns its exit code."""
    log_path = os.path.join(folder, 'search.log')
    print('seed {}: {} ({})'.format(seed, 'resumed' if '--resume' in command else 'started', log_path), flush=True)
    os.makedirs(folder, exist_ok=True)
    with open(log_path, 'a') as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=os.getcwd()).returncode
    print('seed {}: {}'.format(seed, 'done' if code == 0 else 'failed with exit {}, see {}'.format(code, log_path)),
          flush=True)
    return code


def default_jobs(flags, seeds):
    """One search per core on the CPU (nnabla's CPU backend uses one), one at a time on a GPU."""
    on_cpu = any(a == 'cpu' and b in ('-c', '--context') for b, a in zip(flags, flags[1:]))
    return max(1, min(len(seeds), os.cpu_count() or 1)) if on_cpu else 1


def command_run(args):
    if not args.flags:
        raise UserError('give the flags of darts_search.py after --, e.g. '
                        '-- --context cpu --search-space nas-bench-201')
    given = [flag for flag in args.flags if flag.split('=')[0] in OWN_FLAGS]
    if given:
        raise UserError('{} is set by darts_seeds.py for each seed: leave it out of the search flags'.format(given[0]))
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError('--seeds holds a seed twice')
    check_output(args.out, '--out', folder=True)
    flags = args.flags[1:] if args.flags[0] == '--' else args.flags
    for seed in args.seeds:  # the search's own checks of its flags (and of a benchmark table), before any starts
        space_of(parse(SEARCH, search_command(flags, args.out, seed)[2:]))
    jobs = args.jobs or default_jobs(flags, args.seeds)
    todo = [s for s in args.seeds if not finished(seed_folder(args.out, s))]
    for seed in sorted(set(args.seeds) - set(todo)):
        print('seed {}: finished before, kept ({})'.format(seed, seed_folder(args.out, seed)))
    for seed in todo[jobs:]:
        print('seed {}: waits for one of the {} jobs'.format(seed, jobs), flush=True)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        codes = pool.map(lambda seed: run_search(seed, search_command(flags, args.out, seed),
                                                 seed_folder(args.out, seed)), todo)
        failed = [seed for seed, code in zip(todo, codes) if code]
    done = [seed_folder(args.out, s) for s in args.seeds if s not in failed]
    if done:
        write_report(done, args.out)
    if failed:
        raise UserError('the searches of seeds {} failed; the same command resumes them'.format(
            ', '.join(map(str, sorted(failed)))))
    return 0


def search_of(folder):
    """What a finished search folder says: its results, arch, seed and method (its checkpoint's) and
    space (the arch's)."""
    if not finished(folder):
        raise UserError('{} holds no finished search (no results.json)'.format(folder))
    with open(os.path.join(folder, 'results.json')) as f:
        results = json.load(f)
    arch_path = results.get('arch')
    if not arch_path or not os.path.isfile(arch_path):
        arch_path = os.path.join(folder, 'arch.json')
    with open(arch_path) as f:
        arch = json.load(f)
    found = checkpoint.checkpoints(folder)
    config = checkpoint.read_state(os.path.join(found[-1], 'state.json')).config if found else {}
    return dict(folder=folder, seed=config.get('seed'), method=config.get('method', methods.DEFAULT),
                cost_weight=config.get('cost_weight', 0.0), results=results, arch=arch,
                space=results.get('search_space', spaces.named_by(arch) or spaces.DEFAULT))


def mean_std(values):
    """(mean, sample standard deviation) of a list of numbers (std 0 for one)."""
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def report_rows(searches):
    """(header, rows, summary row, report.json's rows) of the searches of one space."""
    nb201 = searches[0]['space'] == spaces.SPACES['nas-bench-201'].name
    keys = ('cifar10_test_acc', 'cifar100_test_acc', 'imagenet16_120_test_acc') if nb201 else ('validation_error',)
    header = ['seed', 'cell'] + (['index'] + ['{} (%)'.format(d) for d in DATASETS] if nb201 else
                                 ['validation error'])
    rows, values = [], {k: [] for k in keys}
    for s in searches:
        cell = s['arch']['arch'] if nb201 else json.dumps(s['arch'], separators=(',', ':'))
        cell = '`{}`'.format(cell.replace('|', '\\|'))  # a | inside a table cell, escaped
        found = [s['results'].get(k) for k in keys]
        rows.append([str(s['seed']), cell] + ([str(s['arch']['index'])] if nb201 else []) +
                    ['{:.2f}'.format(v) if v is not None else '-' for v in found])
        for k, v in zip(keys, found):
            if v is not None:
                values[k].append(v)
    summary = ['mean ± std', '{} searches'.format(len(searches))] + ([''] if nb201 else []) + [
        '{:.2f} ± {:.2f}'.format(*mean_std(values[k])) if values[k] else '-' for k in keys]
    stats = {k: dict(zip(('mean', 'std'), mean_std(v))) for k, v in values.items() if v}
    return header, rows, summary, stats


def write_report(folders, out):
    """report.md, report.json and seeds.png of the searches in ``folders`` (one space) into ``out``."""
    searches = [search_of(folder) for folder in folders]
    names = {s['space'] for s in searches}
    if len(names) > 1:
        raise UserError('the searches are of different spaces ({}): report each space apart'.format(
            ', '.join(sorted(names))))
    by_method = {}
    for s in searches:
        by_method.setdefault(s['method'], []).append(s)
    several = len(by_method) > 1
    table, stats = [], {}
    for method, group in by_method.items():
        header, rows, summary, stats[method] = report_rows(group)
        if several:
            header, rows, summary = ['method'] + header, [[method] + r for r in rows], [method] + summary
        table += ['| ' + ' | '.join(r) + ' |' for r in rows + [summary]]
    table = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)] + table
    stats = stats if several else stats[searches[0]['method']]
    title = spaces.SPACES[searches[0]['space']].title
    seeds = len({s['seed'] for s in searches})
    what = 'of {} methods over {} seeds'.format(len(by_method), seeds) if several else 'over {} seeds'.format(seeds)
    text = '# {} searches {}\n\n{}\n\nStandard deviations are sample ones (n - 1). Folders: {}.\n'.format(
        title, what, '\n'.join(table), ', '.join(s['folder'] for s in searches))
    os.makedirs(out, exist_ok=True)
    write_atomic(os.path.join(out, 'report.md'), lambda f: f.write(text))
    write_json(dict(space=searches[0]['space'], searches=[{k: s[k] for k in ('folder', 'seed', 'method', 'results',
                                                                             'arch')}
                                                          for s in searches], mean_std=stats),
               os.path.join(out, 'report.json'), indent=1)
    nb201 = searches[0]['space'] == spaces.SPACES['nas-bench-201'].name
    series = TABLE_SERIES[0] if nb201 else 'Validation error'
    curves = {'{}seed {}'.format(s['method'] + ', ' if several else '', s['seed']): read_series(s['folder'], series)
              for s in searches}
    path = os.path.join(out, 'seeds.png')
    references = nb201_references(spaces.get(searches[0]['space'])) if nb201 else {}
    drawn(lambda: seed_curves({k: v for k, v in curves.items() if v is not None}, path,
                              'table accuracy on CIFAR-10 of the derived cell (%)' if nb201 else 'validation error',
                              references), 'seeds.png')
    print(text)
    print('report written to {}'.format(os.path.join(out, 'report.md')))


def nb201_references(space):
    """The CIFAR-10 lines of the picture: the cell of skip connections, where DARTS collapses in
    NAS-Bench-201's paper (54.30 %), and the best cell of the space (94.37 %), from its table."""
    all_skip = to_string(['skip_connect'] * len(EDGES))
    return {'cell of skip connections': space.entry(all_skip).accuracies[0], 'best cell of the space': space.best[0]}


def cell_multiply_adds(space):
    """{cell string: multiply-adds per image} of every cell of the table at the table's size: the
    skeleton's plus each kept op's, read off the supernet of that size as --cost-weight reads them
    (methods.cost.op_costs; the derived network's count, tests/test_cost.py)."""
    with nn.parameter_scope('cell_multiply_adds'):
        graph = search_graph(space, Net(BOTH['output_filter'], BOTH['num_cells'], CIFAR10), 1)
        costs, skeleton = op_costs(graph, space, BOTH['num_cells'])
    cost = costs[space.alpha_names[0]]
    return {text: skeleton + sum(int(cost[e, OPS.index(op)]) for e, op in enumerate(parse_cell(text)))
            for text in space.table}


def pareto_front(points):
    """The points (x, y) that no other point beats with a smaller or equal x and a larger y, by x."""
    front, best = [], -np.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def command_pareto(args):
    check_output(args.out, '--out')
    searches = [search_of(folder) for folder in args.folders]
    if any(s['space'] != 'nas-bench-201' for s in searches):
        raise UserError('pareto draws NAS-Bench-201 searches only: {} is not one'.format(
            next(s['folder'] for s in searches if s['space'] != 'nas-bench-201')))
    space = spaces.get('nas-bench-201')
    madds = cell_multiply_adds(space)
    cells = [(madds[text] / 1e6, entry.accuracies[0]) for text, entry in space.table.items()]
    found = {}
    for s in sorted(searches, key=lambda s: s['cost_weight']):
        text = s['arch']['arch']
        found.setdefault('λ = {:g}'.format(s['cost_weight']), []).append((madds[text] / 1e6,
                                                                          space.entry(text).accuracies[0]))
    drawn(lambda: pareto_picture(cells, pareto_front(cells), found, args.out), args.out)
    for label, points in found.items():
        print('{}: {}'.format(label, ', '.join('{:.1f} M, {:.2f} %'.format(*p) for p in points)))
    print('picture written to {}'.format(args.out))
    return 0


def command_report(args):
    check_output(args.out, '--out', folder=True)
    write_report(args.folders, args.out)
    return 0


def main(argv=None):
    parser = Parser(prog='darts_seeds.py', description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    run_ = commands.add_parser('run', help='run darts_search.py over seeds, then report')
    run_.add_argument('--seeds', type=int, nargs='+', required=True, help='the seeds of the searches')
    run_.add_argument('--out', required=True, help='folder of the searches (seed_<s>/) and the report')
    run_.add_argument('--jobs', type=int, default=None, help='searches at once (default: cores on the CPU, 1 on a GPU)')
    run_.add_argument('flags', nargs=argparse.REMAINDER, help='-- and the flags of darts_search.py')
    report = commands.add_parser('report', help='report finished search folders')
    report.add_argument('folders', nargs='+', help='monitor folders of finished searches')
    report.add_argument('--out', required=True, help='folder of report.md, report.json and seeds.png')
    pareto = commands.add_parser('pareto', help='draw the cells of a --cost-weight sweep over the table\'s')
    pareto.add_argument('folders', nargs='+', help='monitor folders of finished NAS-Bench-201 searches')
    pareto.add_argument('--out', required=True, help='the picture (PNG)')
    args = parser.parse_args(argv)
    if args.command == 'run' and args.jobs is not None and args.jobs < 1:
        raise UserError('--jobs must be positive')
    return {'run': command_run, 'report': command_report, 'pareto': command_pareto}[args.command](args)


if __name__ == '__main__':
    sys.exit(run(main))
