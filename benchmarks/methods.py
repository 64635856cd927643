"""Time the search step of every --method on both spaces, side by side in one run; print a markdown
table (seconds per step, the ratio to DARTS's, nnabla function calls per step, peak memory) and
write the JSON lines of benchmarks/bench.py.

    python benchmarks/methods.py [--out methods_speed.jsonl] [--steps 6]

The sizes are those of docs/methods.md's comparison on NAS-Bench-201 (C=8, N=1, batch 64) and a
short DARTS-space search (5 cells of C=8, 4 intermediate nodes, batch 32). Each method runs in a
process of its own (benchmarks/bench.py search), one after the other, so that none shares the
core with another.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import methods  # noqa: E402

SIZES = {'nas-bench-201': ['--search-space', 'nas-bench-201', '--num-cells', '1', '--output-filter', '8',
                           '--batch-size', '64'],
         'darts': ['--search-space', 'darts', '--num-cells', '5', '--output-filter', '8', '--batch-size', '32']}


def time_step(space, method, steps):
    """bench.py's JSON line for one method's search step on one space."""
    command = [sys.executable, os.path.join(HERE, 'bench.py'), 'search', *SIZES[space], '--method', method,
               '--steps', str(steps)]
    out = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    if out.returncode:
        raise SystemExit('{} on {} failed:\n{}'.format(method, space, out.stderr[-2000:]))
    return dict(json.loads(out.stdout.strip().splitlines()[-1]), method=method, space=space)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=None, help='also write the JSON lines here')
    parser.add_argument('--steps', type=int, default=6, help='timed steps of each method')
    args = parser.parse_args()
    rows = [time_step(space, method, args.steps) for space in SIZES for method in methods.NAMES]
    if args.out:
        with open(args.out, 'w') as f:
            f.writelines(json.dumps(r) + '\n' for r in rows)
    print('| space | method | s/step | vs darts | functions/step | peak RSS (MB) |')
    print('|---|---|---|---|---|---|')
    for r in rows:
        darts = next(d['sec_per_step'] for d in rows if d['space'] == r['space'] and d['method'] == methods.DEFAULT)
        print('| {} | {} | {:.3f} | {:.2f} | {} | {:.0f} |'.format(r['space'], r['method'], r['sec_per_step'],
                                                               r['sec_per_step'] / darts, r['functions_per_step'],
                                                               r['peak_rss_mb']))


if __name__ == '__main__':
    main()
