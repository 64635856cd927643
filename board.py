"""TensorBoard event files of a run (``--tensorboard DIR``), written with tensorboardX (no
TensorFlow, no PyTorch), beside the monitor folder's series, which stay the record.

- ``DIR``: every monitor series at its epoch (step = epoch, from 1), images (the search's alpha
  weights and derived cells of every epoch), histograms of the alphas, and at the end of a
  retraining its hyperparameters and results (TensorBoard's hparams, to compare runs);
- ``DIR/iterations``: the running training loss, error and learning rate every N iterations
  (step = iteration), a run of its own because a step axis may not mix epochs and iterations.

A resumed run continues the same event files' story: each writer starts with TensorBoard's
purge step (the first epoch, or iteration, the run will write again), so the events the
stopped run wrote after its checkpoint are dropped by every reader and no step is there twice.
Under mpirun rank 0 alone writes. Nothing here is imported, nor tensorboardX loaded, without
the flag.
"""
import glob
import importlib
import os

import numpy as np

from errors import UserError
from files import check_output

ITERATIONS, HPARAMS = 'iterations', 'hparams'  # the sub-folders (runs) of the board


def missing():
    """The one line for --tensorboard without tensorboardX, or None when it is installed."""
    try:
        importlib.import_module('tensorboardX')
    except ImportError:
        return '--tensorboard needs tensorboardX: pip install -r requirements-tensorboard.txt'
    return None


def check(folder, resume):
    """Refuse a board folder that cannot be written, or that holds another run's events (a new run
    would hide them): before any work, as the monitor folder is refused."""
    if folder is None:
        return
    check_output(folder, '--tensorboard', folder=True)
    if not resume and glob.glob(os.path.join(folder, '**', 'events.out.tfevents.*'), recursive=True):
        raise UserError('--tensorboard {} already holds the events of a run: pass --resume to continue it, or '
                        'choose another folder'.format(folder))


class Board:
    """The event writers of ``folder`` (None: no board, every call does nothing), resuming after
    ``epochs_done`` epochs and ``iteration`` iterations."""

    def __init__(self, folder, epochs_done=0, iteration=0, writes=True):
        self.folder, self.writers = folder, None
        if folder is not None and writes:
            from tensorboardX import SummaryWriter
            self.writers = (SummaryWriter(folder, purge_step=epochs_done + 1, flush_secs=30),
                            SummaryWriter(os.path.join(folder, ITERATIONS), purge_step=iteration + 1, flush_secs=30))

    @property
    def active(self):
        """Whether this board writes (a folder was given, on rank 0)."""
        return self.writers is not None

    def epoch(self, epoch, values):
        """The epoch's values (series name: value) at step ``epoch`` (from 1)."""
        if self.writers:
            for name, value in values.items():
                self.writers[0].add_scalar(name, value, epoch)
            self.writers[0].flush()

    def iteration(self, iteration, values):
        """Running values at step ``iteration`` (iterations done)."""
        if self.writers:
            for name, value in values.items():
                self.writers[1].add_scalar(name, value, iteration)

    def image(self, tag, path, epoch):
        """The PNG at ``path`` as image ``tag`` of ``epoch``."""
        if self.writers:
            from PIL import Image
            with Image.open(path) as picture:
                pixels = np.asarray(picture.convert('RGB'))
            self.writers[0].add_image(tag, pixels, epoch, dataformats='HWC')

    def histogram(self, tag, values, epoch):
        if self.writers:
            self.writers[0].add_histogram(tag, np.asarray(values, dtype=np.float64).ravel(), epoch)

    def hparams(self, flags, results):
        """The run's hyperparameters (name: number, string or bool) and results, for the hparams tab,
        in folder/hparams (written again by a resumed run, its purge step dropping the first)."""
        if self.writers:
            from tensorboardX import SummaryWriter
            from tensorboardX.summary import hparams
            with SummaryWriter(os.path.join(self.folder, HPARAMS), purge_step=0) as writer:
                for summary in hparams(flags, results):
                    writer.file_writer.add_summary(summary)
                for name, value in results.items():
                    writer.add_scalar(name, value, 0)

    def close(self):
        if self.writers:
            for writer in self.writers:
                writer.close()
            self.writers = None
