"""Run benchmarks/bench.py and a PyTorch measuring stick (torch_ref, not part of this repository)
one after the other on the configurations of docs/speed.md, and print the table.

    python benchmarks/side_by_side.py --torch-ref PATH/TO/torch_ref.py
        [--torch-python /tmp/torchref/bin/python] [--full-size True] [--pc-darts True]
    python benchmarks/side_by_side.py --nas-bench-201 True --torch-ref benchmarks/torch_nb201.py \
        --torch-python /tmp/torchnb201/bin/python
    python benchmarks/side_by_side.py --recurrent True --torch-ref benchmarks/torch_rnn.py

torch_ref is called with the arguments of CONFIGS (search or train, C, L, batch size, steps, 1),
or of NB201 with ``--nas-bench-201 True``, or of RECURRENT with ``--recurrent True``, and must
print, as its last line, a JSON object with 'sec_per_step' and 'params'. Each measurement is its
own process, run alone; peak memory is that process's maximum resident set size (from wait4).
Both sides run on one thread: torch_ref by its last argument, the products that bench.py's
recurrent steps hand to numpy's BLAS (numpy_functions.py) by OPENBLAS_NUM_THREADS=1.
``--pc-darts True`` instead compares the full-size PC-DARTS step (K=4, edge normalisation) at
batch 64 and 256 with torch_ref's DARTS step at batch 64: time per image and peak memory.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIGS = [  # (label, bench.py arguments, torch_ref.py arguments or None)
    ('search, first order (C=8, L=5, batch 16)',
     ['search', '--num-cells', '5', '--output-filter', '8', '--batch-size', '16', '--steps', '4'],
     ['search', '8', '5', '16', '4', '1']),
    ('search, second order (C=8, L=5, batch 16)',
     ['search', '--num-cells', '5', '--output-filter', '8', '--batch-size', '16', '--steps', '4', '--second-order', 'True'],
     None),
    ('retrain DARTS_V2 (C=16, L=8, batch 32)',
     ['train', '--model-arch-name', 'DARTS_V2', '--num-cells', '8', '--output-filter', '8', '-f', '8',
      '--batch-size', '32', '--steps', '6'],
     ['train', '16', '8', '32', '6', '1']),
]
PROFILED = (0, 2)  # the configurations profiled afterwards (bench.py --profile True)
PROFILE_ROWS = (('convolution (dense and depthwise)', 'convolution'), ('batch norm', 'batch norm'),
                ('pooling', 'pooling'), ('ReLU', 'ReLU'), ('nnabla kernels together', 'kernels'),
                ('other functions (mixing, drop path, sums, concatenation, slices, clip norm)', 'other functions'),
                ('outside functions (solvers, Python, data)', 'outside functions (solvers, Python, data wait)'))
FULL_SIZE = ('search, full size (C=16, L=8, batch 64), one step',
             ['search', '--num-cells', '8', '--output-filter', '16', '--batch-size', '64', '--steps', '1', '--warmup', '0'],
             ['search', '16', '8', '64', '1', '1'])
PC_DARTS = [(batch, ['search', '--num-cells', '8', '--output-filter', '16', '--batch-size', str(batch), '--steps', '2',
                     '--partial-channels', '4', '--edge-normalization', 'True']) for batch in (64, 256)]
PC_DARTS_REFERENCE = (64, ['search', '16', '8', '64', '2', '1'])
NB201_CELL = '|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|'
NB201 = [  # (label, bench.py arguments, benchmarks/torch_nb201.py arguments): the paper's sizes, C=16, N=5
    ('NAS-Bench-201 search, first order (C=16, N=5, batch 64)',
     ['search', '--search-space', 'nas-bench-201', '--num-cells', '5', '--output-filter', '16', '--batch-size', '64',
      '--steps', '3'], ['search', '16', '5', '64', '3', '1']),
    ('NAS-Bench-201 retrain of the best CIFAR-10 cell (C=16, N=5, batch 64)',
     ['train', '--model-arch-name', NB201_CELL, '--batch-size', '64', '--steps', '3'],
     ['train', NB201_CELL, '16', '5', '64', '3', '1']),
]

RECURRENT = [  # (label, bench.py arguments, benchmarks/torch_rnn.py arguments): the paper's sizes
    ('recurrent search, first order (300/300, batch 256, BPTT 35)',
     ['search', '--dataset', 'ptb', '--steps', '2'], ['search', '300', '256', '35', '2', '1']),
    ('recurrent retrain of DARTS_V2 (850/850, batch 64, BPTT 35)',
     ['train', '--dataset', 'ptb', '--model-arch-name', 'DARTS_V2', '--steps', '3'], ['train', '850', '64', '35', '3', '1']),
]


def run(command):
    """Run ``command`` alone; its last JSON line plus its peak resident memory (MB)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT,
                            env=dict(os.environ, OPENBLAS_NUM_THREADS='1'))
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit('failed: {}'.format(' '.join(command)))
    result = json.loads(out.strip().splitlines()[-1])
    result['peak_mb'] = round(usage.ru_maxrss / 1024)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--torch-python', default='/tmp/torchref/bin/python')
    p.add_argument('--torch-ref', default='', help='the PyTorch measuring stick (a Python script)')
    p.add_argument('--full-size', default='True', choices=('True', 'False'))
    p.add_argument('--pc-darts', default='False', choices=('True', 'False'))
    p.add_argument('--nas-bench-201', default='False', choices=('True', 'False'),
                   help='compare the NAS-Bench-201 steps with --torch-ref benchmarks/torch_nb201.py')
    p.add_argument('--recurrent', default='False', choices=('True', 'False'),
                   help='compare the recurrent steps with --torch-ref benchmarks/torch_rnn.py')
    args = p.parse_args()
    if not (os.path.exists(args.torch_python) and os.path.exists(args.torch_ref)):
        sys.exit('torch_ref not found: give --torch-python and --torch-ref (docs/speed.md)')
    if args.pc_darts == 'True':
        return compare_pc_darts(args)
    rows, ours = [], {}
    configs = (NB201 if args.nas_bench_201 == 'True' else RECURRENT if args.recurrent == 'True' else
               CONFIGS + ([FULL_SIZE] if args.full_size == 'True' else []))
    for label, bench_args, torch_args in configs:
        mine = run([sys.executable, os.path.join(HERE, 'bench.py')] + bench_args)
        ours[label] = mine
        print(json.dumps({'config': label, 'nnabla': mine}), flush=True)
        ref = run([args.torch_python, args.torch_ref] + torch_args) if torch_args else None
        if ref:
            print(json.dumps({'config': label, 'torch_ref': ref}), flush=True)
        rows.append((label, mine, ref))
    print('\n| step | nnabla s/step | torch_ref s/step | ratio | nnabla peak MB | torch_ref peak MB | parameters |')
    print('|---|---|---|---|---|---|---|')
    for label, mine, ref in rows:
        print('| {} | {:.2f} | {} | {} | {} | {} | {} |'.format(
            label, mine['sec_per_step'], '{:.2f}'.format(ref['sec_per_step']) if ref else '-',
            '{:.2f}x'.format(mine['sec_per_step'] / ref['sec_per_step']) if ref else '-',
            mine['peak_mb'], ref['peak_mb'] if ref else '-',
            mine['parameters'] if not ref or ref['params'] == mine['parameters'] else '{} vs {}'.format(
                mine['parameters'], ref['params'])))
    if args.nas_bench_201 == 'True' or args.recurrent == 'True':
        return
    first, second = (ours[CONFIGS[i][0]]['sec_per_step'] for i in (0, 1))
    print('\nsecond order / first order: {:.2f}x'.format(second / first))
    profiles = [run([sys.executable, os.path.join(HERE, 'bench.py')] + CONFIGS[i][1] + ['--profile', 'True'])['profile']
                for i in PROFILED]
    print('\n| share of a step | ' + ' | '.join(CONFIGS[i][0] for i in PROFILED) + ' |')
    print('|---|' + '---|' * len(PROFILED))
    for label, key in PROFILE_ROWS:
        print('| {} | {} |'.format(label, ' | '.join('{:.1f} %'.format(100 * p.get(key, 0)) for p in profiles)))


def compare_pc_darts(args):
    """Time per image and peak memory of the full-size PC-DARTS step against torch_ref's DARTS."""
    batch, torch_args = PC_DARTS_REFERENCE
    ref = run([args.torch_python, args.torch_ref] + torch_args)
    print(json.dumps({'config': 'torch_ref DARTS, batch {}'.format(batch), 'torch_ref': ref}), flush=True)
    ref_image = ref['sec_per_step'] / batch
    print('\n| step (C=16, L=8) | s/step | ms/image | vs torch_ref | peak MB | vs torch_ref |')
    print('|---|---|---|---|---|---|')
    print('| torch_ref DARTS, batch {} | {:.2f} | {:.0f} | 1 | {} | 1 |'.format(
        batch, ref['sec_per_step'], 1000 * ref_image, ref['peak_mb']))
    for batch, bench_args in PC_DARTS:
        mine = run([sys.executable, os.path.join(HERE, 'bench.py')] + bench_args)
        per_image = mine['sec_per_step'] / batch
        print('| ours PC-DARTS K=4 + edge normalisation, batch {} | {:.2f} | {:.0f} | {:.2f}x | {} | {:.2f}x |'.format(
            batch, mine['sec_per_step'], 1000 * per_image, per_image / ref_image, mine['peak_mb'],
            mine['peak_mb'] / ref['peak_mb']), flush=True)


if __name__ == '__main__':
    main()
