"""The two rules for the paths a user names, and the one atomic writer.

- An output (a folder or a file a job writes) is refused before any work when the path is an
  existing item of the other kind, or when its nearest existing ancestor is not a folder this
  user can write into; missing folders on the way are created when the output is written.
- An input (arch JSON, alphas, saved parameters, checkpoint state, dataset archive) is refused
  before it is read when it does not exist, is not a regular file (a named pipe would hang the
  job, an endless device fill the memory) or a folder where folders are allowed, or is larger
  than such a file can be.
"""
import json
import os
import stat

from errors import UserError

MB = 1 << 20


def check_output(path, flag, folder=False):
    """Refuse an output path of ``flag`` that the job could not create or write (see above)."""
    if os.path.exists(path) and os.path.isdir(path) != folder:
        raise UserError('{} {} exists and is not a {}'.format(flag, path, 'folder' if folder else 'file'))
    existing = os.path.dirname(os.path.abspath(path)) if not os.path.isdir(path) else os.path.abspath(path)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError('cannot write {} {}: {} is not a folder'.format(flag, path, existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError('cannot write into {} {}: {} is read-only or not writable by this user'.format(
            flag, path, existing))


def check_input(path, what, max_bytes, folder_ok=False):
    """Refuse an input ``path`` (described as ``what`` in the message) that cannot be what it should be."""
    try:
        info = os.stat(path)
    except OSError as e:
        why = 'it does not exist' if isinstance(e, FileNotFoundError) else e.strerror or str(e)
    else:
        why = None
        if not (stat.S_ISREG(info.st_mode) or folder_ok and stat.S_ISDIR(info.st_mode)):
            why = 'it is not a regular file{}'.format(' or a folder' if folder_ok else '')
        elif stat.S_ISREG(info.st_mode) and info.st_size > max_bytes:
            why = 'it is {:.0f} MB, larger than such a file can be ({:.0f} MB at most)'.format(
                info.st_size / MB, max_bytes / MB)
    if why:
        raise UserError('cannot read {} {}: {}'.format(what, path, why))


def write_atomic(path, write, mode='w'):
    """Create ``path`` through ``write(file)`` on a temporary file renamed over it when complete, so
    that a job killed mid-write leaves the previous version (or nothing), never half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path + '.tmp', mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + '.tmp', path)


def write_json(value, path, indent=None):
    """Write ``value`` as JSON atomically."""
    write_atomic(path, lambda f: json.dump(value, f, indent=indent))


def series_path(folder, name):
    """The file of monitor series ``name`` in ``folder`` (nnabla's naming: spaces become dashes)."""
    return os.path.join(folder, name.replace(' ', '-') + '.series.txt')
