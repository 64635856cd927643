"""Disk full and unwritable paths: a checkpoint or monitor write that fails with ENOSPC or
EACCES stops the run with one clear line and leaves the last good checkpoint loadable (a
resumed run then ends as the uninterrupted one); a read-only --monitor-path or
--model-save-path is refused before any work.

ENOSPC/EACCES are raised at the write call by inject.py (as root, chmod cannot make a folder
unwritable); a read-only folder is simulated by inject.py --deny, which makes every write
under it fail, and os.access report it, as a read-only file system does.
"""
import os

import pytest

from faults.faultlib import (CONFIGS, assert_identical, assert_loadable, checkpoint_iteration, run_injected,
                             tally)
from helpers import checkpoint_folders, one_line, run_cli, snapshot

pytestmark = pytest.mark.slow
ENOSPC, EACCES = 'No space left on device', 'Permission denied'

# (configuration, faults, fragments of the error line, newest checkpoint left, resume to the end);
# a new run writes checkpoints at iterations 0, 3, 6, 9, 10, ... (train) and 0, 3, 5, 6, ... (search1)
WRITES = [
    ('train', ['ckpt_params:4:enospc'], [ENOSPC, '.checkpoint_tmp/params.h5', '--resume'], 6, True),
    ('train', ['ckpt_solver:5:enospc'], [ENOSPC, 'solver_weights.h5'], 9, False),
    ('train', ['ckpt_state:3:enospc'], [ENOSPC, 'state.json'], 3, False),
    ('train', ['ckpt_rename:6:eacces'], [EACCES, '.checkpoint_tmp'], 10, False),
    ('train', ['series:3:enospc'], [ENOSPC, '.series.txt', 'checkpoint_000000009'], 9, True),
    ('train', ['series:9:eacces'], [EACCES, '.series.txt'], 18, False),
    ('train', ['save:3:sigterm', 'ckpt_params:4:enospc'], [ENOSPC, 'checkpoint_000000006'], 6, True),
    ('train', ['final_params:1:enospc'], [ENOSPC, 'params.h5'], 20, True),
    ('train', ['nnp:1:enospc'], [ENOSPC, 'model.nnp'], 20, False),
    ('train', ['json:1:enospc'], [ENOSPC, 'results.json'], 20, False),
    ('search1', ['ckpt_solver:4:enospc'], [ENOSPC, 'solver_alphas.h5', 'checkpoint_000000000'], 0, False),
    ('search1', ['epoch_json:1:eacces'], [EACCES, 'arch_epoch_1.json', 'checkpoint_000000003'], 3, True),
    ('search1', ['json:3:enospc'], [ENOSPC, 'alphas.json'], 10, False),
    ('search1', ['epoch_json:3:enospc'], [ENOSPC, 'arch.json'], 10, True),
]


@pytest.mark.parametrize('name, faults, fragments, newest, resume', WRITES,
                         ids=['{}-{}'.format(w[0], '+'.join(w[1])) for w in WRITES])
def test_a_failed_write_stops_in_one_line_and_keeps_the_last_checkpoint(name, faults, fragments, newest, resume,
                                                                         archive, reference, tmp_path):
    config = CONFIGS[name]
    folder = tmp_path / 'm'
    with tally('disk full (ENOSPC) or unwritable (EACCES) at a write'):
        res, fired = run_injected(config.script, config.argv(archive, folder), faults, log_dir=tmp_path)
        assert fired == [f.replace(':', ' ') for f in faults], (fired, res.stderr[-2000:])
        one_line(res, *fragments, code=1)
        found = checkpoint_folders(folder)
        assert (checkpoint_iteration(found[-1]) if found else None) == newest, found
        if found:
            assert_loadable(found[-1])
        if resume:  # the checkpoint left is the one a resumed run continues from, to the same end
            again = run_cli(config.program, config.argv(archive, folder, resume=bool(found)))
            assert again.returncode == 0, again.stderr[-3000:]
            assert_identical(reference(name)[0], folder, config)


def test_a_failed_learning_curves_drawing_is_a_warning(archive, reference, tmp_path):
    """learning_curves.png is a picture of the series: a failed drawing warns, the job goes on."""
    config = CONFIGS['train']
    folder = tmp_path / 'm'
    with tally('disk full (ENOSPC) or unwritable (EACCES) at a write'):
        res, fired = run_injected(config.script, config.argv(archive, folder), ['curves:1:enospc'], log_dir=tmp_path)
        assert fired == ['curves 1 enospc'] and res.returncode == 0, res.stderr[-2000:]
        warnings = [line for line in res.stderr.splitlines() if line.startswith('warning: ')]
        assert len(warnings) == 1 and 'learning_curves.png not drawn' in warnings[0] and ENOSPC in warnings[0]
        assert 'warning' not in res.stdout
        assert_identical(reference('train')[0], folder, config)


# ---------------------------------------------------------------- read-only folders


@pytest.mark.parametrize('name, layout, code, flag', [
    ('train', 'm=ro', 'EROFS', '--monitor-path'),
    ('train', 'm=ro o=w', 'EACCES', '--monitor-path'),
    ('train', 'm=w o=ro', 'EROFS', '--model-save-path'),
    ('train', 'm=ro/sub', 'EACCES', '--monitor-path'),
    ('search1', 'm=ro', 'EROFS', '--monitor-path'),
    ('search1', 'm=w o=ro', 'EACCES', '--model-save-path'),
])
def test_a_read_only_folder_is_refused_before_any_work(name, layout, code, flag, archive, tmp_path):
    config = CONFIGS[name]
    ro, w = tmp_path / 'ro', tmp_path / 'w'
    ro.mkdir()
    paths = dict(item.split('=') for item in layout.split())
    monitor = tmp_path / paths['m']
    argv = config.argv(archive, monitor)
    if 'o' in paths:
        argv += ['-o', str(tmp_path / paths['o'])]
    if config.script == 'search':  # the arch JSON goes elsewhere: the folders are what is tested
        argv[argv.index('--model-arch-name') + 1] = str(tmp_path / 'arch.json')
    with tally('read-only --monitor-path or --model-save-path'):
        res, _ = run_injected(config.script, argv, deny='{}:{}'.format(ro, code), log_dir=tmp_path)
        line = one_line(res, flag, 'read-only or not writable', code=2)
        assert str(ro) in line
        assert config.built_line not in res.stdout  # before the data was loaded and the network built
        assert not os.path.exists(str(w)) and not os.listdir(str(ro))
        assert not os.path.exists(str(tmp_path / 'arch.json'))


def test_resuming_into_a_folder_made_read_only_is_refused_and_touches_nothing(archive, reference, tmp_path):
    config = CONFIGS['train']
    folder = tmp_path / 'm'
    with tally('read-only --monitor-path or --model-save-path'):
        res, _ = run_injected(config.script, config.argv(archive, folder), ['ckpt_params:5:enospc'], log_dir=tmp_path)
        one_line(res, ENOSPC, code=1)
        before = snapshot(folder)
        res, _ = run_injected(config.script, config.argv(archive, folder, resume=True),
                              deny='{}:EROFS'.format(folder), log_dir=tmp_path)
        one_line(res, '--monitor-path', str(folder), 'read-only', code=2)
        assert snapshot(folder) == before
        again = run_cli(config.program, config.argv(archive, folder, resume=True))
        assert again.returncode == 0, again.stderr[-3000:]
        assert_identical(reference('train')[0], folder, config)
