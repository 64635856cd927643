"""Run darts_train.py or darts_search.py in this process with faults injected at exact places.

    python tests/faults/inject.py {train,search} [--fault POINT:N:ACTION]... [--deny PATH:ERRNO]
                                  [--deny-read FILE] -- FLAGS...

The production code has no fault hooks: this wrapper imports the project's modules, patches
the functions of the points (see install() for the list), then calls the script's ``main``
through ``args.run`` exactly as the script's ``__main__`` block does (same exit codes, same
one-line errors).

POINT:N:ACTION acts at the N-th call (from 1, counted in this process) of POINT:
  kill     SIGKILL this process at that call (for writes of .h5 files: half-way through the file)
  sigint   send SIGINT to this process, then let the call proceed
  sigterm  send SIGTERM to this process, then let the call proceed
  enospc   the call fails with OSError(ENOSPC) (for .h5 files: half-way through the file)
  eacces   the call fails with PermissionError(EACCES)
  partial  (rmtree points only) remove part of the folder, then SIGKILL
  nan      every weight gradient becomes NaN, then the call proceeds (the 'step' point: a step
           that diverges, whatever the flags)
--deny PATH:ERRNO makes every write under PATH fail with ERRNO (EACCES or EROFS) as a
read-only or foreign folder does, also for root (os.access says so too); --deny-read FILE
makes reading FILE fail with EACCES.

Each fault that fires appends 'POINT N ACTION' to the file named by $DARTS_FAULT_LOG.
"""
import argparse
import builtins
import errno
import io
import os
import shutil
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

import h5py  # noqa: E402
import nnabla  # noqa: E402
import nnabla.monitor  # noqa: E402

import checkpoint  # noqa: E402
import darts_search  # noqa: E402
import darts_train  # noqa: E402
import datasets  # noqa: E402
import errors  # noqa: E402
import genotype  # noqa: E402
import loop  # noqa: E402
import numerics  # noqa: E402
from methods import darts as darts_method  # noqa: E402

ACTIONS = ('kill', 'sigint', 'sigterm', 'enospc', 'eacces', 'partial', 'nan')
TMP = '.' + checkpoint.PREFIX + 'tmp'
_open, _io_open, _os_open = builtins.open, io.open, os.open


def _log(text):
    """Append one line to $DARTS_FAULT_LOG with a raw write (unaffected by the patches)."""
    path = os.environ.get('DARTS_FAULT_LOG')
    if path:
        fd = _os_open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (text + '\n').encode())
        finally:
            os.close(fd)


def _in(path, folder):
    """Whether ``path`` is ``folder`` or lies under it."""
    path, folder = os.path.abspath(os.fspath(path)), os.path.abspath(folder)
    return path == folder or path.startswith(folder + os.sep)


def _parent_name(path):
    return os.path.basename(os.path.dirname(os.path.abspath(os.fspath(path))))


class Point:
    """One injection point: counts its calls and acts at the N-th."""

    def __init__(self, name, nth, action):
        self.name, self.nth, self.action, self.calls = name, nth, action, 0

    def reached(self):
        """Count a call; True (and logged) when it is the N-th."""
        self.calls += 1
        if self.calls != self.nth:
            return False
        _log('{} {} {}'.format(self.name, self.nth, self.action))
        return True

    def act(self, path=''):
        """Do the action of a reached point (kill, signal or raise)."""
        if self.action in ('kill', 'partial'):
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.action == 'sigint':
            os.kill(os.getpid(), signal.SIGINT)
        elif self.action == 'sigterm':
            os.kill(os.getpid(), signal.SIGTERM)
        elif self.action == 'enospc':
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path) if path else None)
        elif self.action == 'eacces':
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path) if path else None)
        elif self.action == 'nan':
            for p in nnabla.get_parameters(grad_only=True).values():
                p.g = float('nan')


def wrap(owner, attr, point, when=None, after=False, path_arg=0):
    """Replace ``owner.attr`` by a function that acts at the point's N-th matching call."""
    original = getattr(owner, attr)

    def wrapper(*a, **k):
        matches = when is None or when(*a, **k)
        path = a[path_arg] if matches and len(a) > path_arg and isinstance(a[path_arg], (str, os.PathLike)) else ''
        if matches and not after and point.reached():
            point.act(path)
        result = original(*a, **k)
        if matches and after and point.reached():
            point.act(path)
        return result

    setattr(owner, attr, wrapper)


def wrap_generator(owner, attr, point):
    """Replace the generator function ``owner.attr`` by one that acts before its N-th item."""
    original = getattr(owner, attr)

    def wrapper(*a, **k):
        for item in original(*a, **k):
            if point.reached():
                point.act()
            yield item

    setattr(owner, attr, wrapper)


H5_POINTS = []  # (point, match(path)) acting on .h5 files opened for writing


def h5_writes(point, match):
    """A point acting on an .h5 file opened for writing whose path ``match`` accepts, at the
    file's second entry (it exists and is half written, as on a disk that fills up or a job
    killed mid-write). h5py.File is patched once for all such points."""
    H5_POINTS.append((point, match))
    if len(H5_POINTS) > 1:
        return

    class File(h5py.File):
        def __init__(self, name, mode='r', *a, **k):
            super().__init__(name, mode, *a, **k)
            self._faults, self._entries, self._path = [], 0, name
            if isinstance(name, (str, os.PathLike)) and mode in ('w', 'w-', 'x', 'a'):
                self._faults = [p for p, match in H5_POINTS if match(name) and p.reached()]

        def _entry(self):
            self._entries += 1
            if self._entries == 2:
                faults, self._faults = self._faults, []
                for fault in faults:
                    fault.act(self._path)

        def __setitem__(self, key, value):  # parameters: one dataset each
            self._entry()
            super().__setitem__(key, value)

        def create_dataset(self, *a, **k):
            self._entry()
            return super().create_dataset(*a, **k)

        def create_group(self, *a, **k):  # solver states: one group per parameter
            self._entry()
            return super().create_group(*a, **k)

    h5py.File = File


def partial_rmtree(point, when):
    """Patch shutil.rmtree: at the point, remove one file of the folder (params.h5 first), then
    act (a kill in the middle of removing a folder)."""
    original = shutil.rmtree

    def rmtree(path, *a, **k):
        if os.path.isdir(path) and when(path) and point.reached():
            if point.action == 'partial':
                names = sorted(os.listdir(path))
                for name in ['params.h5'] + names:
                    if name in names:
                        os.remove(os.path.join(path, name))
                        break
            point.act(path)
        return original(path, *a, **k)

    shutil.rmtree = rmtree


def series_open(point):
    """Patch checkpoint.MonitorSeries so that the point acts right after resumable_series created a
    series (a resumed run reopening its series files: nnabla's MonitorSeries truncates the file
    it is given, and the earlier points must survive a kill there)."""

    class Series(nnabla.monitor.MonitorSeries):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            if point.reached():
                point.act(getattr(self, 'sp', ''))

    checkpoint.MonitorSeries = Series


def _ckpt(name):
    """Matches a file called ``name`` (or a solver_*.h5 file for 'solver') in the temporary checkpoint folder."""
    def match(path, *a, **k):
        if not isinstance(path, (str, os.PathLike)):  # open() of a file descriptor
            return False
        base = os.path.basename(os.fspath(path))
        if _parent_name(path) != TMP:
            return False
        return base.startswith('solver_') if name == 'solver' else base == name
    return match


def _final_h5(path):
    return os.path.basename(os.fspath(path)) == 'params.h5' and _parent_name(path) != TMP


def _writing(mode):
    return any(c in mode for c in 'wax+')


# the points that wrap one function each: point -> [(owner, attribute, options of wrap)]
WRAPPED = {
    'step': [(numerics.GradClipper, '__call__', {})],  # in a step: after the backward pass, before the update
    'accumulate': [(loop.TrainingLoop, 'add_step', {})],  # a step done, its values not yet counted
    # inside the second-order step, weights temporarily moved (each of these moves them)
    'unrolled': [(darts_method.Unroller, method, {}) for method in ('unroll', 'perturb', 'restore')],
    'epoch_json': [(genotype, 'save', dict(path_arg=1))],  # arch_epoch_N.json (and, last, the final arch JSON)
    'series': [(nnabla.monitor.MonitorSeries, 'add', {})],  # one point of one monitor series
    'curves': [(loop, 'learning_curves', dict(path_arg=1))],  # learning_curves.png
    'save': [(loop.TrainingLoop, 'save', {})],  # TrainingLoop.save, before anything of the checkpoint is written
    'nnp': [(darts_train, 'export', dict(path_arg=3))],  # the retraining's model.nnp
    # any JSON written atomically by a script (results.json, alphas*.json)
    'json': [(module, 'write_json', dict(path_arg=1)) for module in (darts_train, darts_search, genotype)],
    'load': [(datasets, 'load', {})],  # reading the dataset, before training
    'plot': [(darts_search, 'draw_cells', dict(path_arg=1))],  # the search's final cell diagrams
}
GENERATORS = {'eval': (darts_train, 'eval_batches')}  # before a test batch of the retraining's evaluation
H5_MATCHES = {'ckpt_params': _ckpt('params.h5'), 'ckpt_solver': _ckpt('solver'), 'final_params': _final_h5}
OPENED = {  # points on builtins.open and os.rename, by what they match
    'ckpt_state': ('open', lambda p, mode='r', *a, **k: _ckpt('state.json')(p) and _writing(mode), False),
    'ckpt_rename': ('rename', lambda src, dst, *a, **k: os.path.basename(src) == TMP, False),
    'ckpt_renamed': ('rename', lambda src, dst, *a, **k: os.path.basename(src) == TMP, True),  # before the pruning
}
POINTS = tuple(WRAPPED) + tuple(GENERATORS) + tuple(H5_MATCHES) + tuple(OPENED) + ('series_open', 'ckpt_rmtree')


def install(point):
    """Patch the function of ``point`` (a Point)."""
    name = point.name
    if name in WRAPPED:
        for owner, attr, options in WRAPPED[name]:
            wrap(owner, attr, point, **options)
    elif name in GENERATORS:
        wrap_generator(*GENERATORS[name], point)
    elif name in H5_MATCHES:
        h5_writes(point, H5_MATCHES[name])
    elif name in OPENED:
        attr, when, after = OPENED[name]
        wrap(builtins if attr == 'open' else os, attr, point, when=when, after=after)
    elif name == 'series_open':
        series_open(point)
    elif name == 'ckpt_rmtree':  # removal of an existing checkpoint folder (pruned, or replaced by
        # one of the same iteration), not of the temporary one
        partial_rmtree(point, lambda p: checkpoint.PREFIX in os.path.basename(os.fspath(p))
                       and os.path.basename(os.fspath(p)) != TMP)
    else:
        raise SystemExit('inject.py: unknown point {!r}'.format(name))


def missing_targets():
    """The 'point: owner.attribute' of every wrapped function that does not exist (a rename)."""
    wrapped = [(name, owner, attr) for name, entries in WRAPPED.items() for owner, attr, _ in entries]
    wrapped += [(name, owner, attr) for name, (owner, attr) in GENERATORS.items()]
    return ['{}: {}.{}'.format(name, getattr(owner, '__name__', owner), attr) for name, owner, attr in wrapped
            if not callable(getattr(owner, attr, None))]


def deny_writes(folder, code):
    """Every creation, write, rename or removal of an entry of ``folder`` (at any depth) fails
    with ``code``; os.access reports the folder as not writable."""
    def inside(path):
        return _in(os.path.dirname(os.path.abspath(os.fspath(path))), folder)

    def fail(path):
        raise OSError(code, os.strerror(code), os.fspath(path))

    def guarded_open(opener):
        def open_(file, mode='r', *a, **k):
            if isinstance(file, (str, os.PathLike)) and _writing(mode) and inside(file):
                fail(file)
            return opener(file, mode, *a, **k)
        return open_

    builtins.open = guarded_open(_open)
    io.open = guarded_open(_io_open)

    def os_open(path, flags, *a, **k):
        writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        if flags & writes and 'dir_fd' not in k and inside(path):
            fail(path)
        return _os_open(path, flags, *a, **k)
    os.open = os_open

    original_mkdir = os.mkdir

    def mkdir(path, *a, **k):  # os.makedirs calls it too
        if inside(path):
            if os.path.exists(path):  # as on a read-only file system: EEXIST comes first
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
            fail(path)
        return original_mkdir(path, *a, **k)
    os.mkdir = mkdir

    for attr in ('rename', 'replace'):
        def two(src, dst, *a, _original=getattr(os, attr), **k):
            if inside(src) or inside(dst):
                fail(dst)
            return _original(src, dst, *a, **k)
        setattr(os, attr, two)
    for attr in ('remove', 'unlink', 'rmdir'):
        def one(path, *a, _original=getattr(os, attr), **k):
            if 'dir_fd' not in k and inside(path):
                fail(path)
            return _original(path, *a, **k)
        setattr(os, attr, one)

    original_rmtree = shutil.rmtree

    def rmtree(path, ignore_errors=False, *a, **k):
        if inside(path) and os.path.exists(path):
            if ignore_errors:
                return None
            fail(path)
        return original_rmtree(path, ignore_errors, *a, **k)
    shutil.rmtree = rmtree

    original_access = os.access

    def access(path, mode, *a, **k):
        if mode & os.W_OK and _in(path, folder) and os.path.exists(path):
            return False
        return original_access(path, mode, *a, **k)
    os.access = access

    original_file = h5py.File

    class File(original_file):
        def __init__(self, name, mode='r', *a, **k):
            if isinstance(name, (str, os.PathLike)) and mode != 'r' and inside(name):
                fail(name)
            super().__init__(name, mode, *a, **k)
    h5py.File = File


def deny_reads(path):
    """Opening ``path`` for reading fails with EACCES, as a file of another user's does."""
    def guarded(opener):
        def open_(file, mode='r', *a, **k):
            if isinstance(file, (str, os.PathLike)) and not _writing(mode) and \
                    os.path.abspath(os.fspath(file)) == os.path.abspath(path):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(file))
            return opener(file, mode, *a, **k)
        return open_
    builtins.open = guarded(builtins.open)
    io.open = guarded(io.open)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    split = argv.index('--') if '--' in argv else len(argv)
    parser = argparse.ArgumentParser(prog='inject.py')
    parser.add_argument('script', choices=('train', 'search'))
    parser.add_argument('--fault', action='append', default=[], metavar='POINT:N:ACTION')
    parser.add_argument('--deny', default=None, metavar='PATH:ERRNO')
    parser.add_argument('--deny-read', default=None, metavar='FILE')
    opts, flags = parser.parse_args(argv[:split]), argv[split + 1:]
    if opts.deny:
        path, code = opts.deny.rsplit(':', 1)
        deny_writes(path, getattr(errno, code))
    if opts.deny_read:
        deny_reads(opts.deny_read)
    for spec in opts.fault:
        name, nth, action = spec.split(':')
        if action not in ACTIONS:
            raise SystemExit('inject.py: unknown action {!r}'.format(action))
        install(Point(name, int(nth), action))
    script = darts_train if opts.script == 'train' else darts_search
    sys.argv = ['darts_{}.py'.format(opts.script)] + flags
    return errors.run(script.main, flags)


if __name__ == '__main__':
    sys.exit(main())
