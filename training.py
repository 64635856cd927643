"""Machinery shared by the search and the retraining: device context, learning-rate schedule,
global-norm gradient clipping, loss scaling, checkpoints, resumable monitors, interrupts.
"""
import glob
import json
import math
import os
import shutil
import signal
import sys
import time

import numpy as np
import nnabla as nn
import nnabla.functions as F
from nnabla.ext_utils import get_extension_context
from nnabla.monitor import Monitor, MonitorSeries
from tqdm import tqdm

from args import Stop, UserError
from plots import learning_curves

CHECKPOINT_PREFIX = 'checkpoint_'


def device_context(context, device_id, type_config):
    """The nnabla context, checked now: a missing CUDA extension is one clear line, not a traceback."""
    if context == 'cpu' and type_config == 'half':
        raise UserError('--type-config half needs --context cudnn (the CPU backend computes in float)')
    try:
        ctx = get_extension_context(context, device_id=str(device_id), type_config=type_config)
        nn.NdArray.from_numpy_array(np.zeros(1, np.float32)).cast(np.float32, ctx)
    except Exception as e:  # ImportError, OSError from a missing CUDA runtime, a bad device id
        raise UserError('--context {} is unavailable here ({}): use --context cpu, or install '
                        'nnabla-ext-cuda120 (needs CUDA 12 and cuDNN 8)'.format(
                            context, str(e).splitlines()[0] if str(e) else type(e).__name__))
    return ctx


def cosine_lr(epoch, epochs, lr_max, lr_min):
    """The paper's per-epoch cosine schedule from lr_max (epoch 0) towards lr_min."""
    return lr_min + (lr_max - lr_min) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def set_momentum_lr(solver, lr):
    """Change the lr of an ``S.Momentum`` the way the paper's (PyTorch) SGD would.

    nnabla keeps v = 0.9 v + lr g, PyTorch buf = 0.9 buf + g and steps lr * buf; rescaling v
    by lr_new / lr_old whenever the lr changes keeps v == lr * buf exactly.
    """
    old = solver.learning_rate()
    if old > 0 and lr != old:
        for state in solver.get_states().values():
            state.pstate['m'].data *= lr / old
    solver.set_learning_rate(lr)


def sharing(arrays):
    """name -> a Variable whose data is ``arrays[name]`` itself, not a copy: a graph built on these
    reads (and may write) those arrays at every forward."""
    out = {}
    for name, array in arrays.items():
        out[name] = nn.Variable(array.shape)
        out[name].data = array
    return out


def norm_graph(variables):
    """A graph of the 2-norm of ``variables`` taken together (its forward gives the current value)."""
    return F.add_n(*[F.sum(v ** 2) for v in variables]) ** 0.5


class GradClipper:
    """Clips the global gradient norm of a set of parameters with a graph built once.

    Each gradient is shared (not copied) into a Variable, so one forward of the norm graph
    reads the current gradients; ``solver.scale_grad`` applies the clip.
    """

    def __init__(self, params, max_norm):
        self.max_norm = max_norm
        self.norm = norm_graph(sharing({k: p.grad for k, p in params.items()}).values())

    def global_norm(self):
        """The 2-norm of all gradients together."""
        self.norm.forward(clear_buffer=True)
        return float(self.norm.d)

    def __call__(self, solver):
        """Scale the gradients so that their global norm is at most max_norm (as PyTorch does)."""
        norm = self.global_norm()
        coef = self.max_norm / (norm + 1e-6)
        if coef < 1:
            solver.scale_grad(coef)
        return norm


class Interrupted(Stop):
    """SIGINT or SIGTERM arrived: the job saves a checkpoint and exits 128 + signal number."""

    def __init__(self, signum):
        super().__init__('interrupted by {}'.format(signal.Signals(signum).name))
        self.code = 128 + signum


class Diverged(Stop):
    """A loss became NaN or infinite; the last good checkpoint is left as it was."""


class InterruptFlag:
    """While entered, SIGINT/SIGTERM only set a flag that the loops check between steps."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self.signum = None
        self.previous = [signal.signal(sig, self.handle) for sig in self.SIGNALS]
        return self

    def __exit__(self, *exc):
        for sig, handler in zip(self.SIGNALS, self.previous):
            signal.signal(sig, handler)

    def handle(self, signum, frame):
        self.signum = signum

    def check(self):
        """Raise Interrupted if a signal came since the last check."""
        if self.signum is not None:
            raise Interrupted(self.signum)


def write_json(value, path, indent=None):
    """Write ``value`` as JSON atomically (temporary file, then rename)."""
    with open(path + '.tmp', 'w') as f:
        json.dump(value, f, indent=indent)
    os.replace(path + '.tmp', path)


def checkpoints(folder):
    """Complete checkpoint folders in ``folder``, oldest first."""
    found = glob.glob(os.path.join(folder, CHECKPOINT_PREFIX + '*', 'state.json'))
    return sorted(os.path.dirname(p) for p in found)


def save_checkpoint(folder, state, solvers, keep=2):
    """Write parameters, solver states and ``state`` atomically as a new checkpoint folder.

    Everything goes into a temporary folder that is renamed when complete, so a job killed
    mid-write leaves the previous checkpoint intact; only the ``keep`` newest are kept.
    """
    final = os.path.join(folder, '{}{:09d}'.format(CHECKPOINT_PREFIX, state['iteration']))
    tmp = os.path.join(folder, '.{}tmp'.format(CHECKPOINT_PREFIX))
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    nn.save_parameters(os.path.join(tmp, 'params.h5'))
    for name, solver in solvers.items():
        solver.save_states(os.path.join(tmp, 'solver_{}.h5'.format(name)))
    with open(os.path.join(tmp, 'state.json'), 'w') as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    replaced = os.path.join(folder, '.{}replaced'.format(CHECKPOINT_PREFIX))
    shutil.rmtree(replaced, ignore_errors=True)
    if os.path.exists(final):  # the same iteration again (an interrupt just after a checkpoint): moved
        os.rename(final, replaced)  # aside in one step, so that a kill never leaves it half removed
    os.rename(tmp, final)
    shutil.rmtree(replaced, ignore_errors=True)
    for old in checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


STATE_TYPES = dict(config=dict, iteration=int, epochs_done=int, sums=dict, count=int, elapsed=(int, float),
                   lr=dict, extra=dict, last=dict)


def read_state(path):
    """The state.json of a checkpoint, refused in one line if it is damaged."""
    try:
        with open(path, 'rb') as f:
            state = json.loads(f.read().decode('utf-8'))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON or bad UTF-8
        state, why = None, ' '.join(str(e).split()) or type(e).__name__
    else:
        why = 'not the state of a checkpoint'
    if not (isinstance(state, dict) and all(isinstance(state.get(key), kind) and not isinstance(state.get(key), bool)
                                            for key, kind in STATE_TYPES.items())):
        raise UserError('--resume: {} is damaged ({}); remove its folder to resume from the checkpoint '
                        'before it'.format(path, why))
    return state


def read_checkpoint_state(folder, config):
    """The state of the newest checkpoint in ``folder``, checked against this run's ``config``."""
    found = checkpoints(folder)
    if not found:
        raise UserError('--resume: no checkpoint in {}'.format(folder))
    state = read_state(os.path.join(found[-1], 'state.json'))
    for key, value in config.items():
        if state['config'].get(key) != value:
            raise UserError('--resume: the checkpoint in {} was made with {} = {}, this run has {}'.format(
                found[-1], key, json.dumps(state['config'].get(key)), json.dumps(value)))
    state['path'] = found[-1]
    return state


def load_parameters_into(params, file, source):
    """Copy the parameters saved in ``file`` into ``params`` (name -> Variable of the built graph)
    in place, refusing a file that lacks one of them or holds it in another shape (a checkpoint
    of another architecture, or of an earlier version of this code); entries the graph does not
    have, such as an aux head, are ignored."""
    with nn.parameter_scope('loaded'):
        try:
            nn.load_parameters(file)
        except Exception as e:  # h5py and protobuf errors for anything that is not a parameter file
            raise UserError('cannot load parameters from {}: {}'.format(source, str(e).splitlines()[0]))
        loaded = nn.get_parameters(grad_only=False)
    nn.parameter.pop_parameter('loaded')
    for name, p in params.items():
        if name not in loaded or loaded[name].shape != p.shape:
            raise UserError('{} does not match this architecture: {} is {} there, {} here'.format(
                source, name, loaded[name].shape if name in loaded else 'missing', p.shape))
        p.data.copy_from(loaded[name].data)


def load_checkpoint(path, solvers):
    """Load parameters and solver states of a checkpoint into the built graph, in place."""
    load_parameters_into(nn.get_parameters(grad_only=False), os.path.join(path, 'params.h5'), path)
    for name, solver in solvers.items():
        solver.load_states(os.path.join(path, 'solver_{}.h5'.format(name)))


def series(monitor, name, keep_until=None):
    """A ``MonitorSeries`` whose file keeps its lines up to index ``keep_until`` (for a resume).

    The lines a resumed run would write again are dropped, so a series has no gap and no
    duplicate. The file is replaced atomically by its kept lines (``MonitorSeries`` given the
    monitor would truncate it first: a job killed right then would lose the earlier lines).
    """
    path = os.path.join(monitor.save_path, name.replace(' ', '-') + '.series.txt')
    kept = []
    if keep_until is not None and os.path.exists(path):
        with open(path) as f:
            kept = [line for line in f if line.split() and int(line.split()[0]) <= keep_until]
    with open(path + '.tmp', 'w') as f:
        f.writelines(kept)
    os.replace(path + '.tmp', path)
    mon = MonitorSeries(name, None, interval=1, verbose=False)
    mon.sp = path  # nnabla's output file of the series, set after construction: no truncation
    return mon


def initial_state(monitor_path, save_path, config, resume):
    """The state of the newest checkpoint (``resume``) or of a new job, checked before any work."""
    if not resume:
        check_fresh_output(monitor_path, save_path)
    for folder, flag in ((monitor_path, '--monitor-path'), (save_path, '--model-save-path')):
        check_writable(folder, flag)
    if resume:
        return read_checkpoint_state(save_path, config)
    return dict(config=config, iteration=0, epochs_done=0, sums={}, count=0, elapsed=0.0, lr={},
                extra={}, last={})


def check_fresh_output(monitor_path, save_path):
    """Refuse to start a new run over the files of an earlier one (they would be truncated)."""
    for folder in {monitor_path, save_path}:
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise UserError('{} exists and is not a folder: choose another --monitor-path/--model-save-path'.format(
                folder))
        if glob.glob(os.path.join(folder, '*.series.txt')) or checkpoints(folder):
            raise UserError('{} already holds a run: pass --resume to continue it, or choose another '
                            '--monitor-path/--model-save-path'.format(folder))


def check_writable(folder, flag):
    """Refuse a folder the job could not write into (read-only, another user's) before any work,
    rather than at its first checkpoint or epoch end."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if os.path.isdir(existing) and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError('cannot write into {} {}: {} is read-only or not writable by this user'.format(
            flag, folder, existing))


class LossScaler:
    """Dynamic loss scaling for --type-config half; with float it scales by 1 and checks nothing."""

    def __init__(self, enabled, scale=2.0 ** 12, growth_interval=1000):
        self.enabled, self.growth_interval = enabled, growth_interval
        self.scale, self.good_steps = (scale if enabled else 1.0), 0

    def backward(self, loss):
        loss.backward(self.scale, clear_buffer=True)

    def unscale(self, solver):
        """Undo the scale on the gradients; False (skip the update) if they overflowed."""
        if not self.enabled:
            return True
        if solver.check_inf_or_nan_grad():
            self.scale, self.good_steps = self.scale / 2, 0
            return False
        solver.scale_grad(1.0 / self.scale)
        self.good_steps += 1
        if self.good_steps % self.growth_interval == 0:
            self.scale *= 2
        return True


class Job:
    """The outer loop of a training job: iterations, epochs, monitor series, checkpoints.

    The script gives ``begin_epoch(epoch)``, ``step(iteration) -> {name: value}`` (averaged
    over the epoch into series of those names) and ``end_epoch(epoch, interrupts) -> {name:
    value}``. Checkpoints hold everything a resumed job needs to continue exactly: the data
    stream, augmentation and drop path are functions of (seed, iteration).
    """

    def __init__(self, state, monitor_path, save_path, epochs, iters_per_epoch, save_interval, solvers,
                 curves=()):
        self.state, self.save_path, self.solvers, self.curves = state, save_path, solvers, curves
        self.epochs, self.iters_per_epoch, self.save_interval = epochs, iters_per_epoch, save_interval
        self.resumed_epochs = state['epochs_done'] if 'path' in state else None
        os.makedirs(monitor_path, exist_ok=True)
        os.makedirs(save_path, exist_ok=True)
        self.monitor, self.series, self.started = Monitor(monitor_path), {}, time.time()
        self.bar, self.epoch_values, self.writing = None, {}, None

    def restore(self):
        """Load the resumed checkpoint into the built graph and solvers; returns the extra state."""
        if 'path' in self.state:
            load_checkpoint(self.state['path'], self.solvers)
            for name, lr in self.state['lr'].items():
                self.solvers[name].set_learning_rate(lr)
        return self.state['extra']

    def elapsed(self):
        return self.state['elapsed'] + time.time() - self.started

    def save(self):
        """Write a checkpoint of the current state (never of weights that are no longer finite)."""
        self.check_weights()
        state = dict(self.state, elapsed=self.elapsed(),
                     lr={name: s.learning_rate() for name, s in self.solvers.items()})
        state.pop('path', None)
        return save_checkpoint(self.save_path, state, self.solvers)

    def log(self, epoch, values):
        """Append one point (index: epoch number from 1) to each named series."""
        self.writing = 'the monitor series in {}'.format(self.monitor.save_path)  # their errors name no file
        for name, value in values.items():
            if name not in self.series:
                self.series[name] = series(self.monitor, name, self.resumed_epochs)
            self.series[name].add(epoch + 1, value)
        self.writing = None

    def draw_curves(self):
        """Refresh learning_curves.png from the series files; a failed drawing never stops the job."""
        try:
            learning_curves([self.monitor.save_path], os.path.join(self.monitor.save_path, 'learning_curves.png'),
                            self.curves)
        except Exception as e:  # matplotlib or font trouble: the numbers are in the series files
            tqdm.write('warning: learning_curves.png not drawn: {}'.format(e))

    def finish_epoch(self, epoch, end_epoch, interrupts):
        """Evaluate, log the epoch's series and checkpoint."""
        self.check_weights()
        values = {name: total / max(self.state['count'], 1) for name, total in self.state['sums'].items()}
        values.update(self.epoch_values)
        values.update(end_epoch(epoch, interrupts))
        for name, value in values.items():  # a test loss can overflow while the steps' losses did not
            if not math.isfinite(value):
                raise Diverged('{} became {} at the end of epoch {} (iteration {}); {}'.format(
                    name, value, epoch + 1, self.state['iteration'], self.left_as_it_was()))
        values['Elapsed time'] = self.elapsed()
        self.log(epoch, values)
        self.draw_curves()
        tqdm.write('epoch {}/{}: {}'.format(epoch + 1, self.epochs, ', '.join(
            '{} {:.4g}'.format(name.lower(), value) for name, value in values.items())))
        self.state.update(epochs_done=epoch + 1, sums={}, count=0, last=values)
        self.save()
        return values

    def run(self, begin_epoch, step, end_epoch):
        """Iterate to the last epoch; returns the values logged at the last epoch end.

        ``begin_epoch(epoch)`` sets the epoch's schedule and returns values to log with it.
        A SIGINT/SIGTERM saves a checkpoint and raises Interrupted.
        """
        with InterruptFlag() as interrupts:
            try:
                try:
                    if 'path' not in self.state:  # a new job: a first checkpoint before the first step, so
                        self.save()  # that a job stopped at any later moment can continue with --resume
                    return self.loop(begin_epoch, step, end_epoch, interrupts)
                except Interrupted as e:
                    self.close_bar()
                    e.args = ('{} at iteration {}; checkpoint saved in {}; continue with --resume'.format(
                        e.args[0], self.state['iteration'], self.save()),)
                    raise
            except OSError as e:  # disk full, folder made read-only: what failed, and where to resume
                raise Stop(self.write_failed(e))
            finally:
                self.close_bar()

    def write_failed(self, error):
        """The one-line message of a failed write: the file, the reason, the checkpoint left to resume from."""
        found = checkpoints(self.save_path)
        return 'cannot write {}: {}; {}'.format(
            error.filename or self.writing or 'into {}'.format(self.monitor.save_path), error.strerror or error,
            'the last checkpoint, {}, is intact: continue with --resume once this is fixed'.format(found[-1])
            if found else 'no checkpoint was written yet')

    def loop(self, begin_epoch, step, end_epoch, interrupts):
        total, ipe = self.epochs * self.iters_per_epoch, self.iters_per_epoch
        epoch_begun = None
        while True:
            it = self.state['iteration']
            pending = it % ipe == 0 and it // ipe > self.state['epochs_done']
            epoch = it // ipe - 1 if pending else it // ipe
            if epoch != epoch_begun and epoch < self.epochs:
                self.epoch_values, epoch_begun = begin_epoch(epoch), epoch
            if pending:
                self.close_bar()
                self.finish_epoch(epoch, end_epoch, interrupts)
                continue
            if it >= total:
                return self.state['last']
            if self.bar is None:  # redrawn often on a terminal, seldom into a log file
                self.bar = tqdm(total=ipe, initial=it % ipe, dynamic_ncols=True,
                                mininterval=0.2 if sys.stderr.isatty() else 60,
                                desc='epoch {}/{}'.format(epoch + 1, self.epochs))
            self.accumulate(it, step(it))
            if self.save_interval and self.state['iteration'] % self.save_interval == 0 \
                    and self.state['iteration'] % ipe:
                self.save()
            interrupts.check()

    def close_bar(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def check_weights(self):
        """Raise Diverged if a parameter holds NaN or infinity: the update of the last step made it so
        (a loss computed from such weights would have stopped the job before)."""
        for name, p in nn.get_parameters(grad_only=False).items():
            d = p.d
            if not np.isfinite(d).all():
                raise Diverged('the weights became {} at iteration {} ({}); {}'.format(
                    'nan' if np.isnan(d).any() else 'inf', self.state['iteration'] - 1, name, self.left_as_it_was()))

    def left_as_it_was(self):
        """The end of a divergence message: no checkpoint is written after a divergence."""
        if checkpoints(self.save_path):
            return 'the last checkpoint in {} is left as it was'.format(self.save_path)
        return 'no checkpoint was written in {}'.format(self.save_path)

    def accumulate(self, it, values):
        """Check the step's values, add them to the epoch's sums and show the running means."""
        for name, value in values.items():
            if not math.isfinite(value):
                raise Diverged('{} became {} at iteration {}; {}'.format(name, value, it, self.left_as_it_was()))
            self.state['sums'][name] = self.state['sums'].get(name, 0.0) + value
        self.state['count'] += 1
        self.state['iteration'] = it + 1
        self.bar.update(1)
        shown = {name: total / self.state['count'] for name, total in self.state['sums'].items()}
        shown.update(self.epoch_values)
        self.bar.set_postfix({name.lower().replace('training ', '').replace('learning rate', 'lr'):
                              '{:.4g}'.format(v) for name, v in shown.items()}, refresh=False)
