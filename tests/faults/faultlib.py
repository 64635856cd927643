"""Helpers of the fault suite only (the shared ones are in tests/helpers.py): the tiny
configurations, running the CLIs through inject.py, comparing a run with the uninterrupted
reference, and the tally of faults that tests/conftest.py prints and writes to
tests/faults/results.json.
"""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
INJECT = os.path.join(HERE, 'inject.py')
for _path in (ROOT, os.path.dirname(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from helpers import (SEARCH_TINY, TIMEOUT, TRAIN_TINY, checkpoint_folders, env, read_h5,  # noqa: E402
                     read_series)


class Config:
    """One tiny job: the script, its flags (without -m and the arch JSON of the search), its size."""

    def __init__(self, name, script, flags, epochs, iters_per_epoch, interval):
        self.name, self.script, self.flags = name, script, flags
        self.epochs, self.ipe, self.interval = epochs, iters_per_epoch, interval
        self.total = epochs * iters_per_epoch

    def argv(self, archive, folder, resume=False, extra=()):
        """The CLI flags of this job writing into ``folder``."""
        argv = list(self.flags) + ['--dataset-path', str(archive), '-m', str(folder)]
        if self.script == 'search':
            argv += ['--model-arch-name', os.path.join(str(folder), 'arch.json')]
        return argv + (['--resume', 'True'] if resume else []) + [str(a) for a in extra]

    def saves(self, start=0):
        """Iterations at which a run starting at iteration ``start`` writes its checkpoints."""
        its = [it for it in range(start + 1, self.total + 1)
               if it % self.ipe == 0 or (self.interval and it % self.interval == 0)]
        return its

    @property
    def program(self):
        return 'darts_{}.py'.format(self.script)

    @property
    def built_line(self):
        """What the job prints once its data is loaded and its network built."""
        return 'trainable parameters:' if self.script == 'train' else 'supernet:'

    def series(self):
        if self.script == 'train':
            return ('Training-loss', 'Training-error', 'Training-objective', 'Test-loss', 'Test-error',
                    'Learning-rate', 'Elapsed-time')
        return ('Training-loss', 'Training-error', 'Validation-loss', 'Validation-error', 'Learning-rate',
                'Elapsed-time')


# write_archive(path, 8, 10): 40 training images, 10 test images
CONFIGS = {
    'train': Config('train', 'train', TRAIN_TINY + ['-b', '4', '-e', '2', '-s', '3'], 2, 10, 3),
    'search1': Config('search1', 'search', SEARCH_TINY + ['-e', '2', '-s', '3'], 2, 5, 3),
    'search2': Config('search2', 'search', SEARCH_TINY + ['-e', '2', '-s', '3', '--second-order', 'True'], 2, 5, 3),
}


def run_injected(script, argv, faults=(), deny=None, deny_read=None, log=None, timeout=TIMEOUT, **env_extra):
    """Run a script through inject.py; returns (completed process, [fired 'POINT N ACTION' lines])."""
    cmd = [sys.executable, INJECT, script]
    for fault in faults:
        cmd += ['--fault', fault]
    if deny:
        cmd += ['--deny', deny]
    if deny_read:
        cmd += ['--deny-read', deny_read]
    if log is None:
        log = os.path.join(str(env_extra.pop('log_dir', '/tmp')), 'fault-{}.log'.format(os.getpid()))
    if os.path.exists(log):
        os.remove(log)
    res = subprocess.run(cmd + ['--'] + [str(a) for a in argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=timeout, env=env(DARTS_FAULT_LOG=log, **env_extra))
    fired = []
    if os.path.exists(log):
        with open(log) as f:
            fired = f.read().split('\n')[:-1]
        os.remove(log)
    return res, fired


# ---------------------------------------------------------------- files of a run


def checkpoint_iteration(path):
    with open(os.path.join(path, 'state.json')) as f:
        return json.load(f)['iteration']


def assert_loadable(checkpoint):
    """A checkpoint folder whose state, parameters and solver states all read back, finite."""
    with open(os.path.join(checkpoint, 'state.json')) as f:
        state = json.load(f)
    assert isinstance(state['iteration'], int) and isinstance(state['config'], dict), checkpoint
    names = sorted(os.listdir(checkpoint))
    assert 'params.h5' in names and any(n.startswith('solver_') for n in names), (checkpoint, names)
    for name in names:
        if name.endswith('.h5'):
            arrays = read_h5(os.path.join(checkpoint, name))
            assert arrays, (checkpoint, name)
            for key, value in arrays.items():
                assert np.all(np.isfinite(value)), (checkpoint, name, key)
    return state


def outputs(folder, config):
    """Everything that must not depend on interruptions: final parameters, results, alphas,
    arch JSONs, the newest checkpoint, every series but the elapsed time."""
    folder = str(folder)
    out = {}
    for name in config.series():
        lines = read_series(folder, name)
        out['series ' + name + ' indices'] = [int(i) for i, _ in lines]
        if name != 'Elapsed-time':
            out['series ' + name] = lines
    newest = checkpoint_folders(folder)[-1]
    out['newest checkpoint'] = os.path.basename(newest)
    for name in sorted(os.listdir(newest)):
        if name.endswith('.h5'):
            out['checkpoint ' + name] = read_h5(os.path.join(newest, name))
    with open(os.path.join(newest, 'state.json')) as f:
        state = json.load(f)
    state.pop('elapsed')
    state['last'].pop('Elapsed time', None)
    out['checkpoint state'] = state
    if config.script == 'train':
        out['params.h5'] = read_h5(os.path.join(folder, 'params.h5'))
        with open(os.path.join(folder, 'results.json')) as f:
            results = json.load(f)
        out['results'] = {k: results[k] for k in ('test_error', 'test_loss', 'epochs', 'iterations', 'parameters',
                                                  'arch')}
        out['model.nnp exists'] = os.path.isfile(os.path.join(folder, 'model.nnp'))
    else:
        for name in ['alphas.json', 'arch.json'] + ['{}_epoch_{}.json'.format(kind, e + 1)
                                                    for kind in ('arch', 'alphas') for e in range(config.epochs)]:
            with open(os.path.join(folder, name)) as f:
                out[name] = json.load(f)
    out['temporary files'] = sorted(p for p in os.listdir(folder) if p.startswith('.') or p.endswith('.tmp'))
    return out


def differences(a, b):
    """The keys on which two ``outputs`` differ (arrays compared exactly)."""
    diff = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and x and all(isinstance(v, np.ndarray) for v in x.values()):
            if not isinstance(y, dict) or sorted(x) != sorted(y):
                diff.append(key + ': other entries')
            else:
                diff += ['{}: {}'.format(key, k) for k in sorted(x) if not np.array_equal(x[k], y[k])]
        elif x != y:
            diff.append('{}: {!r} != {!r}'.format(key, x, y) if len(repr(x)) + len(repr(y)) < 400 else key)
    return diff


def assert_identical(reference, folder, config):
    """The run in ``folder`` ended exactly as the uninterrupted one (series without gaps or repeats)."""
    out = outputs(folder, config)
    expected = list(range(1, config.epochs + 1))
    for name in config.series():
        assert out['series ' + name + ' indices'] == expected, (name, out['series ' + name + ' indices'])
    diff = differences(reference, out)
    assert not diff, diff


# ---------------------------------------------------------------- the uninterrupted reference


def timed_run(config, archive, folder):
    """An uninterrupted run, with the moments at which its network was built and it ended."""
    start = time.time()
    proc = subprocess.Popen([sys.executable, config.program] + config.argv(archive, folder), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    built = None
    for line in proc.stdout:
        if built is None and line.startswith(config.built_line):
            built = time.time() - start
    err = proc.stderr.read()
    proc.wait()
    total = time.time() - start
    assert proc.returncode == 0, err
    return dict(built=built, total=total)


# ---------------------------------------------------------------- hard kills


def kill_after(cmd, delay, out_path):
    """Start ``cmd``, SIGKILL it after ``delay`` seconds; returns its exit code (-9 if the kill
    landed) and its output."""
    with open(out_path, 'w') as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env())
        try:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with open(out_path) as f:
        return proc.returncode, f.read()


def checkpoint_traces(folder):
    """What a checkpoint write in progress leaves: the temporary folder (its identity) and the
    complete checkpoints; taken before a run starts, to tell new traces from those of an earlier kill."""
    tmp = os.path.join(str(folder), '.checkpoint_tmp')
    stat = os.stat(tmp) if os.path.isdir(tmp) else None
    return (stat.st_ino, stat.st_mtime_ns) if stat else None, checkpoint_folders(folder)


def what_was_hit(folder, config, output, traces_before):
    """Where a kill landed, judged from the files it left and from what the job had printed."""
    folder = str(folder)
    if config.built_line not in output:
        return 'start-up (imports, data, network)'
    tmp, found = checkpoint_traces(folder)
    if (tmp is not None and tmp != traces_before[0]) or (len(found) > 2 and found != traces_before[1]):
        return 'checkpoint write'
    state = {'iteration': 0, 'epochs_done': 0}
    if found:
        with open(os.path.join(found[-1], 'state.json')) as f:
            state = json.load(f)
    if state['iteration'] >= config.total:
        return 'final writes'
    series_path = os.path.join(folder, 'Training-loss.series.txt')
    logged = len(read_series(folder, 'Training-loss')) if os.path.exists(series_path) else 0
    if logged > state['epochs_done']:
        return 'epoch end (series written, checkpoint not yet)'
    return 'training steps or evaluation'


# ---------------------------------------------------------------- the tally


TALLY = []


@contextlib.contextmanager
def tally(kind, faults=1, what=None):
    """Count one run of fault kind ``kind``: ``faults`` injected, handled as required unless the
    block raises. The block may change entry['faults'] and add to entry['hits']."""
    entry = dict(kind=kind, faults=faults, ok=False, hits=[what] if what else [])
    TALLY.append(entry)
    yield entry
    entry['ok'] = True


def summary():
    """{kind: {faults, runs, ok, hits: {what: n}}} of the tally."""
    kinds = {}
    for entry in TALLY:
        k = kinds.setdefault(entry['kind'], dict(faults=0, runs=0, ok=0, hits={}))
        k['faults'] += entry['faults']
        k['runs'] += 1
        k['ok'] += int(entry['ok'])
        for hit in entry['hits']:
            k['hits'][hit] = k['hits'].get(hit, 0) + 1
    return kinds
