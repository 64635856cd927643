"""The outer loop of both jobs: epochs of steps, the epoch's series, checkpoints, interrupts.

    for each epoch not yet finished:
        the weights' learning rate of the epoch  # logged with the epoch
        for each iteration of the epoch not yet run:
            values = step(iteration)             # {series name: value}, averaged over the epoch
            a checkpoint every save_interval iterations
        values += end_epoch(epoch, interrupts)   # evaluation, per-epoch files
        log the epoch's values, then a checkpoint

A job resumed from a checkpoint enters this loop at the checkpoint's iteration with the
checkpoint's epoch sums, so it logs and saves exactly what the uninterrupted job would have.
"""
import collections
import dataclasses
import math
import os
import signal
import sys
import time

import numpy as np
import nnabla as nn
from tqdm import tqdm

import checkpoint
import parallel
from board import Board
from errors import Stop, agree
from files import series_path
from numerics import set_momentum_lr
from plots import drawn, learning_curves


class Interrupted(Stop):
    """SIGINT or SIGTERM arrived: the job saves a checkpoint and exits 128 + signal number."""
    shared = True  # under mpirun, every rank stops at the same check (see InterruptFlag)

    def __init__(self, signum):
        super().__init__('interrupted by {}'.format(signal.Signals(signum).name))
        self.code = 128 + signum


class Diverged(Stop):
    """A loss or a weight became NaN or infinite; the last good checkpoint is left as it was."""
    shared = True  # the values checked are the same on every rank


class InterruptFlag:
    """While entered, SIGINT/SIGTERM only set a flag that the loops check between steps. Under
    mpirun every check reduces the flag over the ranks, so a signal to any rank stops them all
    at the same check (each check is a collective call: every rank makes the same checks)."""

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
        """Raise Interrupted if a signal came to any rank since the last check."""
        signum = parallel.world().max_int(self.signum or 0)
        if signum:
            raise Interrupted(signum)


def progress_bar(epoch, epochs, done, total):
    """The epoch's bar: redrawn often on a terminal, seldom into a log file; rank 0's alone."""
    return tqdm(total=total, initial=done, dynamic_ncols=True, mininterval=0.2 if sys.stderr.isatty() else 60,
                desc='epoch {}/{}'.format(epoch + 1, epochs), disable=not parallel.world().is_main)


def bar_label(name):
    """A series name as the progress bar shows it: 'Training loss' -> 'loss', 'Learning rate' -> 'lr'."""
    return name.lower().replace('training ', '').replace('learning rate', 'lr')


Plan = collections.namedtuple('Plan', 'epochs lr save_interval save_path monitor_path tensorboard tensorboard_every')
Plan.__doc__ = """What a job's loop runs: ``epochs``, ``lr(epoch)`` the weights' learning rate of an
epoch (from 0), a checkpoint every ``save_interval`` iterations into ``save_path``, the series
into ``monitor_path`` and the TensorBoard events into ``tensorboard`` (None: none), the running
values every ``tensorboard_every`` iterations."""


class TrainingLoop:
    """Runs ``plan.epochs`` epochs of ``iters_per_epoch`` steps from ``state`` (a new job's
    checkpoint.State, or that of the checkpoint ``resumed_from``): the weights' learning rate set
    each epoch, the series ``curves`` logged (Log), checkpoints of ``solvers`` written."""

    def __init__(self, plan, state, resumed_from, iters_per_epoch, solvers, curves):
        self.plan, self.state, self.resumed_from = plan, state, resumed_from
        self.iters_per_epoch, self.solvers = iters_per_epoch, solvers
        self.board = Board(plan.tensorboard, state.epochs_done, state.iteration, parallel.world().is_main)
        self.log = Log(plan.monitor_path, curves, state.epochs_done if resumed_from else None, self.board,
                       plan.tensorboard_every)
        self.started = time.time()
        self.stopped = False

    def stop(self):
        """End the job normally after the current epoch (early stopping): no further epoch runs."""
        self.stopped = True

    def restore(self):
        """Load the checkpoint resumed from into the built graph and solvers; returns its extra state."""
        if self.resumed_from:
            checkpoint.restore(self.resumed_from, self.solvers)
            for name, lr in self.state.lr.items():
                self.solvers[name].set_learning_rate(lr)
        return self.state.extra

    def elapsed(self):
        return self.state.elapsed + time.time() - self.started

    def save(self):
        """Write a checkpoint of the current state (never of weights that are no longer finite) and
        return its folder. Under mpirun rank 0 alone writes it: every rank holds the same
        parameters and state."""
        check_weights(self.state.iteration, self.plan.save_path)
        if not parallel.world().is_main:
            return checkpoint.checkpoint_folder(self.plan.save_path, self.state.iteration)
        state = dataclasses.replace(self.state, elapsed=self.elapsed(),
                                    lr={name: s.learning_rate() for name, s in self.solvers.items()})
        return checkpoint.save(self.plan.save_path, state, self.solvers)

    def run(self, step, end_epoch):
        """Run to the last epoch; returns the values logged at its end. A SIGINT/SIGTERM saves a
        checkpoint and raises Interrupted; a failed write is one line naming the file."""
        try:
            with InterruptFlag() as interrupts:
                try:
                    agree()  # under mpirun: every rank is ready, or all stop with the first error
                    if self.resumed_from is None:  # a first checkpoint before the first step: a job
                        self.save()  # stopped at any later moment can continue with --resume
                    for epoch in range(self.state.epochs_done, self.plan.epochs):
                        if self.stopped:
                            break
                        schedule = {'Learning rate': self.plan.lr(epoch)}
                        set_momentum_lr(self.solvers['weights'], schedule['Learning rate'])
                        self.run_steps(epoch, schedule, step, interrupts)
                        self.finish_epoch(epoch, schedule, end_epoch, interrupts)
                    return self.state.last
                except Interrupted as e:
                    e.args = ('{} at iteration {}; checkpoint saved in {}; continue with --resume'.format(
                        e, self.state.iteration, self.save()),)
                    raise
        except OSError as e:  # disk full, folder made read-only: what failed, and where to resume
            raise Stop(write_failed(e, self.plan.save_path, self.plan.monitor_path))

    def run_steps(self, epoch, schedule, step, interrupts):
        """The epoch's steps from the current iteration, with checkpoints every save_interval."""
        ipe, first, every = self.iters_per_epoch, self.state.iteration, self.plan.save_interval
        end = (epoch + 1) * ipe
        if first == end:
            return
        bar = progress_bar(epoch, self.plan.epochs, first - epoch * ipe, ipe)
        try:
            for it in range(first, end):
                self.add_step(it, step(it), schedule, bar)
                if every and (it + 1) % every == 0 and it + 1 < end:
                    self.save()
                interrupts.check()
        finally:
            bar.close()

    def add_step(self, it, values, schedule, bar):
        """Check the step's values, add them to the epoch's sums and show the running means."""
        state = self.state
        for name, value in values.items():
            if not math.isfinite(value):
                raise Diverged('{} became {} at iteration {}; {}'.format(
                    name, value, it, left_as_it_was(self.plan.save_path)))
            state.sums[name] = state.sums.get(name, 0.0) + value
        state.count += 1
        state.iteration = it + 1
        bar.update(1)
        shown = dict({name: total / state.count for name, total in state.sums.items()}, **schedule)
        self.log.running(it + 1, shown)
        bar.set_postfix({bar_label(name): '{:.4g}'.format(v) for name, v in shown.items()}, refresh=False)

    def finish_epoch(self, epoch, schedule, end_epoch, interrupts):
        """The epoch's means and end values logged, then a checkpoint."""
        check_weights(self.state.iteration, self.plan.save_path)
        values = {name: total / max(self.state.count, 1) for name, total in self.state.sums.items()}
        values.update(schedule)
        values.update(end_epoch(epoch, interrupts))
        for name, value in values.items():  # a test loss can overflow while the steps' losses did not
            if not math.isfinite(value):
                raise Diverged('{} became {} at the end of epoch {} (iteration {}); {}'.format(
                    name, value, epoch + 1, self.state.iteration, left_as_it_was(self.plan.save_path)))
        values['Elapsed time'] = self.elapsed()
        self.log.write(epoch, self.plan.epochs, values)
        self.state.epochs_done, self.state.sums, self.state.count, self.state.last = epoch + 1, {}, 0, values
        self.save()


def check_weights(iteration, save_path):
    """Raise Diverged if a parameter holds NaN or infinity: the update of the last step, the
    ``iteration``-th, made it so (a loss computed from such weights would have stopped the job before)."""
    for name, p in nn.get_parameters(grad_only=False).items():
        d = p.d
        if not np.isfinite(d).all():
            raise Diverged('the weights became {} at iteration {} ({}); {}'.format(
                'nan' if np.isnan(d).any() else 'inf', iteration - 1, name, left_as_it_was(save_path)))


def left_as_it_was(save_path):
    """The end of a divergence message: no checkpoint is written after a divergence."""
    if checkpoint.checkpoints(save_path):
        return 'the last checkpoint in {} is left as it was'.format(save_path)
    return 'no checkpoint was written in {}'.format(save_path)


def write_failed(error, save_path, monitor_path):
    """The one-line message of a failed write: the file, the reason, the checkpoint left to resume from."""
    found = checkpoint.checkpoints(save_path)
    return 'cannot write {}: {}; {}'.format(
        error.filename or 'into {}'.format(monitor_path), error.strerror or error,
        'the last checkpoint, {}, is intact: continue with --resume once this is fixed'.format(found[-1])
        if found else 'no checkpoint was written yet')


class Log:
    """A job's monitor folder: a series file per logged value (index: the epoch, from 1), the
    learning curves redrawn from them, and a summary line per epoch; the same values in the
    TensorBoard ``board`` (board.Board), and the running values every ``every`` iterations. A
    resumed job's series keep their lines up to the epochs done, so they continue without gap or
    duplicate. Under mpirun, rank 0 alone writes them and prints the line."""

    def __init__(self, folder, curves, epochs_done, board, every):
        self.writes = parallel.world().is_main
        if self.writes:
            os.makedirs(folder, exist_ok=True)
        self.folder, self.curves, self.epochs_done, self.series = folder, curves, epochs_done, {}
        self.board, self.every = board, every
        self.panels = {name: title for title, names in curves for name in names}

    def tag(self, name):
        """The TensorBoard tag of series ``name``: its file's name, grouped by its learning-curves
        panel ('error/Test-error'; 'other/' outside the panels)."""
        return '{}/{}'.format(self.panels.get(name, 'other'), name).replace(' ', '-')

    def running(self, iteration, values):
        """The running means of the epoch (and its schedule) after ``iteration`` iterations, every
        ``every`` iterations, to the board, as 'running/<tag>' (charts apart from the epochs')."""
        if self.board.active and iteration % self.every == 0:
            self.board.iteration(iteration, {'running/' + self.tag(name): value for name, value in values.items()})

    def write(self, epoch, epochs, values):
        """Append the epoch's point to each named series, redraw the curves, print the line."""
        if not self.writes:
            return
        for name, value in values.items():
            try:
                if name not in self.series:
                    self.series[name] = checkpoint.resumable_series(self.folder, name, self.epochs_done)
                self.series[name].add(epoch + 1, value)
            except OSError as e:  # a failed write into an open file names no file
                raise OSError(e.errno, e.strerror, e.filename or series_path(self.folder, name)) from e
        self.draw_curves()
        self.board.epoch(epoch + 1, {self.tag(name): value for name, value in values.items()})
        tqdm.write('epoch {}/{}: {}'.format(epoch + 1, epochs, ', '.join(
            '{} {:.4g}'.format(name.lower(), value) for name, value in values.items())))

    def draw_curves(self):
        """Refresh learning_curves.png from the series files (a failed drawing never stops the job)."""
        drawn(lambda: learning_curves([self.folder], os.path.join(self.folder, 'learning_curves.png'), self.curves),
              'learning_curves.png')
