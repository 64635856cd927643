"""How a job ends when something goes wrong: one line on stderr and an exit code.

A user's mistake (a bad flag, file or dataset) is a ``UserError`` (exit 2), raised before any
long work starts; any other planned stop (interrupt, divergence, a failed write) is a ``Stop``
(exit 1, or 128 + the signal number). ``run`` turns them into that line: never a traceback.
"""
import sys


class Stop(Exception):
    """Ends a job with a one-line message on stderr and exit code ``code``."""
    code = 1


class UserError(Stop):
    """A mistake of the user's (bad flag, bad file, bad data): exit code 2, before any long work."""
    code = 2


def run(main, argv=None):
    """Call ``main(argv)``; a Stop or a failed write becomes one line on stderr and its exit code."""
    try:
        return main(argv)
    except Stop as e:
        print('error: {}'.format(e), file=sys.stderr)
        return e.code
    except KeyboardInterrupt:  # before training started: nothing to save
        print('error: interrupted', file=sys.stderr)
        return 130
    except OSError as e:  # disk full, read-only folder: the last checkpoint is still intact
        print('error: {}'.format(e), file=sys.stderr)
        return 1
