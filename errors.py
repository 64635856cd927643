"""How a job ends when something goes wrong: one line on stderr and an exit code.

A user's mistake (a bad flag, file or dataset) is a ``UserError`` (exit 2), raised before any
long work starts; any other planned stop (interrupt, divergence, a failed write) is a ``Stop``
(exit 1, or 128 + the signal number). ``run`` turns them into that line: never a traceback.

Under mpirun the line is printed once: an error before training (found by any rank) is agreed
on by all ranks, which all exit with its code and whose rank 0 prints it; an error that all
ranks meet together in training (``shared``: an interrupt, a divergence) is printed by rank 0;
any other (a failed write of rank 0, the only rank that writes) by the rank that has it.
"""
import argparse
import sys

from tqdm import tqdm

import parallel


class Stop(Exception):
    """Ends a job with a one-line message on stderr and exit code ``code``."""
    code = 1
    shared = False  # True: every rank of an mpirun job stops with this same error


class UserError(Stop):
    """A mistake of the user's (bad flag, bad file, bad data): exit code 2, before any long work."""
    code = 2


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are UserErrors (one line, no usage dump)."""

    def error(self, message):
        raise UserError(message)


def run(main, argv=None):
    """Call ``main(argv)``; a Stop or a failed write becomes one line on stderr and its exit code."""
    try:
        return main(argv)
    except Stop as e:
        return report('error: {}'.format(e), e.code, e.shared)
    except parallel.Unavailable as e:  # met by every rank at its first reduction
        return report('error: {}'.format(e), 2, shared=True)
    except KeyboardInterrupt:  # before training started: nothing to save
        return report('error: interrupted', 130)
    except OSError as e:  # disk full, read-only folder: the last checkpoint is still intact
        return report('error: {}'.format(e), 1)


def agreeing_world():
    """The job's engine, or MPI's when an error came before main() chose one (a bad flag under
    mpirun): the agreement on errors needs nothing more."""
    world = parallel.world()
    return parallel.start('cpu') if world.size == 1 and parallel.launched_size() > 1 else world


def report(line, code, shared=False):
    """Print ``line`` once over the ranks (see above); returns the exit code."""
    world = agreeing_world()
    if world.size > 1 and not world.agreed:
        agreed = world.agree('{}\n{}'.format(code, line))
        code, line = int(agreed.split('\n')[0]), agreed.split('\n', 1)[1]
        shared = True
    if world.is_main or not shared:
        print(line, file=sys.stderr)
    return code


def agree():
    """Called by every rank ready to train: raises the first error another rank met before
    training (so that all ranks exit with it), or returns when none did."""
    world = agreeing_world()
    if world.size > 1 and not world.agreed:
        agreed = world.agree(None)
        if agreed is not None:
            code, line = agreed.split('\n', 1)
            raise Agreed(line, int(code))


class Agreed(Stop):
    """Another rank's error before training, printed by rank 0 of this job."""
    shared = True

    def __init__(self, line, code):
        super().__init__(line[len('error: '):])
        self.code = code


def warn(text, every_rank=False):
    """One 'warning: ' line on stderr, between the progress bars' lines, for what does not stop a
    job (a picture not drawn, an image that cannot be decoded); under mpirun from rank 0 alone,
    unless the warning is about what this rank alone met (``every_rank``)."""
    if every_rank or parallel.world().is_main:
        tqdm.write('warning: ' + text, file=sys.stderr)
