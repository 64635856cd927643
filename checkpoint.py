"""What a job leaves on disk to continue exactly after any stop: checkpoint folders (parameters,
solver states, state.json) and monitor series files that a resumed run extends without a gap.

A checkpoint is written into a temporary folder renamed when complete, so a job killed while
writing one leaves the previous checkpoint intact. The data order, augmentation and drop-path
masks are functions of (seed, iteration), so a checkpoint needs no random state.
"""
import dataclasses
import glob
import json
import os
import shutil

import nnabla as nn
from nnabla.monitor import MonitorSeries

from errors import UserError
from files import MB, check_input, check_output, series_path, write_atomic

PREFIX = 'checkpoint_'
MAX_PARAMETER_FILE = 2048 * MB
STATE_TYPES = dict(config=dict, iteration=int, epochs_done=int, sums=dict, count=int, elapsed=(int, float),
                   lr=dict, extra=dict, last=dict)


@dataclasses.dataclass
class State:
    """Where a job is, as its checkpoints' state.json holds it: ``config`` (what a resume must
    match), the iterations and epochs done, the sums and count of the epoch's step values so far,
    the seconds spent, the solvers' learning rates, the job's own ``extra`` state (the search's
    eigenvalues and DARTS-ES decision, the retraining's loss scale) and the last epoch's values."""
    config: dict
    iteration: int = 0
    epochs_done: int = 0
    sums: dict = dataclasses.field(default_factory=dict)
    count: int = 0
    elapsed: float = 0.0
    lr: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)
    last: dict = dataclasses.field(default_factory=dict)


def checkpoints(folder):
    """Complete checkpoint folders in ``folder``, oldest first."""
    found = glob.glob(os.path.join(folder, PREFIX + '*', 'state.json'))
    return sorted(os.path.dirname(p) for p in found)


def checkpoint_folder(folder, iteration):
    """The checkpoint folder of ``iteration`` in ``folder``."""
    return os.path.join(folder, '{}{:09d}'.format(PREFIX, iteration))


def save(folder, state, solvers, keep=2):
    """Write the parameters, the solver states and ``state`` as a new checkpoint folder; only the
    ``keep`` newest are kept. Returns the folder."""
    final = checkpoint_folder(folder, state.iteration)
    tmp = os.path.join(folder, '.{}tmp'.format(PREFIX))
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    nn.save_parameters(os.path.join(tmp, 'params.h5'))
    for name, solver in solvers.items():
        solver.save_states(os.path.join(tmp, 'solver_{}.h5'.format(name)))
    with open(os.path.join(tmp, 'state.json'), 'w') as f:
        json.dump(dataclasses.asdict(state), f)
        f.flush()
        os.fsync(f.fileno())
    replaced = os.path.join(folder, '.{}replaced'.format(PREFIX))
    shutil.rmtree(replaced, ignore_errors=True)
    if os.path.exists(final):  # the same iteration again (an interrupt just after a checkpoint): moved
        os.rename(final, replaced)  # aside in one step, so that a kill never leaves it half removed
    os.rename(tmp, final)
    shutil.rmtree(replaced, ignore_errors=True)
    for old in checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(path):
    """The State in the state.json of a checkpoint, refused in one line if it is damaged."""
    check_input(path, '--resume: the checkpoint state', MB)
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
    return State(**{key: state[key] for key in STATE_TYPES})


def newest(folder, config, implied=None):
    """(state, folder) of the newest checkpoint in ``folder``, checked against this run's ``config``.
    A key that the checkpoint lacks (one of an earlier version) is checked only where ``implied``
    gives the value its absence meant."""
    found = checkpoints(folder)
    if not found:
        raise UserError('--resume: no checkpoint in {}'.format(folder))
    state = read_state(os.path.join(found[-1], 'state.json'))
    implied = implied or {}
    for key, value in config.items():
        if key not in state.config and key not in implied:
            continue
        if state.config.get(key, implied.get(key)) != value:
            raise UserError('--resume: the checkpoint in {} was made with {} = {}, this run has {}'.format(
                found[-1], key, json.dumps(state.config.get(key, implied.get(key))), json.dumps(value)))
    return state, found[-1]


def start(monitor_path, save_path, config, resume, implied=None):
    """(state, resumed_from): the newest checkpoint's state and folder with ``resume`` (checked as
    ``newest`` checks it), else a new job's state and None; the output folders are checked before
    any work."""
    for folder, flag in ((monitor_path, '--monitor-path'), (save_path, '--model-save-path')):
        check_output(folder, flag, folder=True)
        if not resume and (glob.glob(os.path.join(folder, '*.series.txt')) or checkpoints(folder)):
            raise UserError('{} already holds a run: pass --resume to continue it, or choose another '
                            '--monitor-path/--model-save-path'.format(folder))
    return newest(save_path, config, implied) if resume else (State(config), None)


def load_parameters_into(params, file, source):
    """Copy the parameters saved in ``file`` into ``params`` (name -> Variable of the built graph)
    in place, refusing a file that lacks one of them or holds it in another shape (a checkpoint
    of another architecture, or of an earlier version of this code); entries the graph does not
    have, such as an aux head, are ignored."""
    check_input(file, 'parameters', MAX_PARAMETER_FILE)
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


def restore(path, solvers):
    """Load the parameters and solver states of checkpoint ``path`` into the built graph, in place."""
    load_parameters_into(nn.get_parameters(grad_only=False), os.path.join(path, 'params.h5'), path)
    for name, solver in solvers.items():
        solver.load_states(os.path.join(path, 'solver_{}.h5'.format(name)))


def resumable_series(folder, name, keep_until=None):
    """A ``MonitorSeries`` whose file keeps its lines up to index ``keep_until`` (for a resume).

    The lines a resumed run would write again are dropped, so a series has no gap and no
    duplicate. The file is replaced atomically by its kept lines (``MonitorSeries`` given a
    monitor would truncate it first: a job killed right then would lose the earlier lines).
    """
    path = series_path(folder, name)
    kept = []
    if keep_until is not None and os.path.exists(path):
        with open(path) as f:
            kept = [line for line in f if line.split() and int(line.split()[0]) <= keep_until]
    write_atomic(path, lambda f: f.writelines(kept))
    series = MonitorSeries(name, None, interval=1, verbose=False)
    series.sp = path  # nnabla's output file of the series, set after construction: no truncation
    return series
