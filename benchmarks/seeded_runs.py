"""Seeded tiny runs of both jobs, written into a folder, and the comparison of two such folders:
how a change shows that the jobs compute exactly what they computed before it.

    python benchmarks/seeded_runs.py run OUT [--jobs NAME ...]   # the runs into OUT/<name>/
    python benchmarks/seeded_runs.py compare OLD NEW             # every file of both, byte for byte

The runs use a tiny archive of random images that the script writes itself (OUT/cifar10.tar.gz,
the same bytes every time). ``compare`` ignores only what a run cannot repeat: the elapsed
time (its series, results.json's seconds, state.json's elapsed) and the order of the members
of model.nnp, whose contents it compares. It prints one line per difference and a total.
"""
import argparse
import gzip
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import zipfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ['-c', 'cpu', '--num-cells', '3', '--output-filter', '4', '-b', '4', '-e', '2', '--train-images', '40',
        '--seed', '3']
SEARCH = TINY + ['--num-nodes', '5']
TRAIN = TINY + ['-f', '0', '--test-images', '20', '--auxiliary', 'True', '--cutout', 'True', '--dropout-rate', '0.3']
JOBS = {  # name: (script, flags); the search's arch JSON goes into its monitor folder
    'search1': ('darts_search.py', SEARCH),
    'search2': ('darts_search.py', SEARCH + ['--second-order', 'True', '--hessian-every', '0']),
    'pcdarts': ('darts_search.py', SEARCH + ['--partial-channels', '2', '--edge-normalization', 'True',
                                              '--hessian-every', '0']),
    'train': ('darts_train.py', TRAIN + ['--model-arch-name', 'DARTS_V2']),
}
UNREPEATABLE = ('Elapsed-time.series.txt',)


def write_archive(path, per_batch=10, n_test=20):
    """A tiny CIFAR-10 python archive of random pixels (seed 0), the same bytes on every call."""
    rng, raw = np.random.RandomState(0), io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w') as tar:
        members = [('data_batch_{}'.format(k), per_batch) for k in range(1, 6)] + [('test_batch', n_test)]
        for name, n in members:
            batch = {b'data': rng.randint(0, 256, (n, 3072)).astype(np.uint8),
                     b'labels': [int(v) for v in rng.randint(0, 10, n)]}
            data = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo('cifar-10-batches-py/' + name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    with open(path, 'wb') as f:
        f.write(gzip.compress(raw.getvalue(), compresslevel=1, mtime=0))
    return path


def run(out, names):
    archive = write_archive(os.path.join(out, 'cifar10.tar.gz'))
    for name in names:
        script, flags = JOBS[name]
        folder = os.path.join(out, name)
        argv = flags + ['--dataset-path', archive, '-m', folder]
        if script == 'darts_search.py':
            argv += ['--model-arch-name', os.path.join(folder, 'arch.json')]
        done = subprocess.run([sys.executable, os.path.join(ROOT, script)] + argv, cwd=ROOT, capture_output=True,
                              text=True)
        print('{}: exit {}'.format(name, done.returncode))
        if done.returncode:
            sys.exit(done.stderr[-3000:])


def repeatable(value):
    """A results.json or state.json object without its times."""
    value.pop('seconds', None)
    value.pop('elapsed', None)
    if isinstance(value.get('last'), dict):
        value['last'].pop('Elapsed time', None)
    return value


def comparable(path):
    """The bytes of a file as compared: without its unrepeatable parts."""
    with open(path, 'rb') as f:
        data = f.read()
    name = os.path.basename(path)
    if name in ('results.json', 'state.json'):
        return json.dumps(repeatable(json.loads(data)), sort_keys=True).encode()
    if name.endswith('.nnp'):
        with zipfile.ZipFile(path) as z:
            return b''.join(n.encode() + z.read(n) for n in sorted(z.namelist()))
    return data


def json_keys_apart(old, new):
    """' (keys: ...)': the top-level keys of two JSON objects whose values differ ('' for other files)."""
    if not old.endswith('.json'):
        return ''
    with open(old) as f, open(new) as g:
        a, b = repeatable(json.load(f)), repeatable(json.load(g))
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return ''
    return ' (keys: {})'.format(', '.join(sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))))


def files(folder):
    found = {}
    for root, _, names in os.walk(folder):
        for n in names:
            if n not in UNREPEATABLE and not n.endswith('.png'):
                found[os.path.relpath(os.path.join(root, n), folder)] = os.path.join(root, n)
    return found


def compare(old, new):
    a, b = files(old), files(new)
    differences = 0
    for rel in sorted(set(a) | set(b)):
        if rel not in a or rel not in b:
            print('only in {}: {}'.format(old if rel in a else new, rel))
            differences += 1
        elif comparable(a[rel]) != comparable(b[rel]):
            print('differs: {}{}'.format(rel, json_keys_apart(a[rel], b[rel])))
            differences += 1
    print('{} files compared, {} differences (pictures and elapsed times left out)'.format(
        len(set(a) | set(b)), differences))
    return 1 if differences else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='command', required=True)
    r = sub.add_parser('run')
    r.add_argument('out')
    r.add_argument('--jobs', nargs='+', default=list(JOBS), choices=list(JOBS))
    c = sub.add_parser('compare')
    c.add_argument('old')
    c.add_argument('new')
    a = p.parse_args()
    if a.command == 'run':
        os.makedirs(a.out, exist_ok=True)
        run(a.out, a.jobs)
        return 0
    return compare(a.old, a.new)


if __name__ == '__main__':
    sys.exit(main())
