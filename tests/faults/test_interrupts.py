"""Interrupts: SIGINT and SIGTERM during training and during evaluation save a checkpoint and
exit with 128 + the signal number in one line; resuming from that checkpoint ends as the
uninterrupted run. The signals come from inside (inject.py, at an exact place) or from
outside (os.kill on the real CLI at a seeded random moment once it trains).
"""
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from faults.faultlib import (CONFIGS, assert_identical, assert_loadable, checkpoint_iteration, run_injected,
                             tally)
from helpers import ROOT, checkpoint_folders, env, one_line, run_cli

pytestmark = pytest.mark.slow
KIND = 'interrupt (SIGINT, SIGTERM)'
CODES = {'sigint': 130, 'sigterm': 143}


def check_interrupted(res, folder, signame):
    """One line naming the signal, the iteration and the checkpoint; that checkpoint loads."""
    line = one_line(res, signame.upper(), 'checkpoint saved in', '--resume', code=CODES[signame])
    found = re.search(r'at iteration (\d+); checkpoint saved in (\S+);', line)
    assert found, line
    newest = checkpoint_folders(folder)[-1]
    assert found.group(2) == newest and checkpoint_iteration(newest) == int(found.group(1)), (line, newest)
    assert_loadable(newest)
    return int(found.group(1))


def resume_to_the_end(config, archive, folder, reference):
    res = run_cli(config.program, config.argv(archive, folder, resume=True))
    assert res.returncode == 0, res.stderr[-3000:]
    assert_identical(reference, folder, config)


CASES = [  # (configuration, faults (inject.py), the signal, the iteration the checkpoint is at)
    ('train', ['step:5:sigint'], 'sigint', 5),               # during step 5
    ('train', ['step:14:sigterm'], 'sigterm', 14),
    ('train', ['eval:2:sigint'], 'sigint', 10),              # during the first evaluation
    ('train', ['eval:5:sigterm'], 'sigterm', 20),            # during the last evaluation
    ('train', ['ckpt_params:3:sigterm', 'ckpt_params:4:sigint'], 'sigterm', 6),  # while checkpoint 6 is
    # written, then again (Ctrl-C) while the interrupt checkpoint replaces it
    ('search1', ['step:4:sigint'], 'sigint', 4),
    ('search1', ['epoch_json:1:sigterm'], 'sigterm', 6),     # during the first epoch end: stops after step 6
    ('search2', ['unrolled:6:sigterm'], 'sigterm', 2),       # inside the unrolled step, weights moved to w+
]


@pytest.mark.parametrize('name, faults, signame, iteration', CASES,
                         ids=['{}-{}'.format(c[0], '+'.join(c[1])) for c in CASES])
def test_a_signal_saves_a_checkpoint_and_the_resumed_run_ends_the_same(name, faults, signame, iteration, archive,
                                                                        reference, tmp_path):
    config = CONFIGS[name]
    folder = tmp_path / 'm'
    with tally(KIND, faults=len(faults), what='{} during {}'.format(signame.upper(), faults[0].split(':')[0])):
        res, fired = run_injected(config.script, config.argv(archive, folder), faults, log_dir=tmp_path)
        assert fired == [f.replace(':', ' ') for f in faults], (fired, res.stderr[-2000:])
        assert check_interrupted(res, folder, signame) == iteration
        assert not os.path.exists(str(folder / ('results.json' if config.script == 'train' else 'arch.json')))
        resume_to_the_end(config, archive, folder, reference(name)[0])


def test_sigint_while_the_data_is_read_is_one_line_and_writes_nothing(archive, tmp_path):
    config = CONFIGS['train']
    folder = tmp_path / 'm'
    with tally(KIND, what='SIGINT during load'):
        res, fired = run_injected(config.script, config.argv(archive, folder), ['load:1:sigint'], log_dir=tmp_path)
        assert fired == ['load 1 sigint']
        one_line(res, 'interrupted', code=130)
        assert not os.path.exists(str(folder))


@pytest.mark.parametrize('name, signum, seed', [('train', signal.SIGINT, 0), ('search1', signal.SIGTERM, 0)])
def test_a_signal_from_outside_at_a_random_moment(name, signum, seed, archive, reference, tmp_path):
    """The real CLI, signalled by another process a seeded random time after its first checkpoint."""
    config = CONFIGS[name]
    folder = tmp_path / 'm'
    signame = signal.Signals(signum).name.lower()
    with tally(KIND, what='{} from outside'.format(signame.upper())):
        with open(str(tmp_path / 'out.txt'), 'w') as out, open(str(tmp_path / 'err.txt'), 'w') as err:
            proc = subprocess.Popen([sys.executable, config.program] + config.argv(archive, folder), cwd=ROOT,
                                    stdout=out, stderr=err, env=env())
            try:
                deadline = time.time() + 120
                while not checkpoint_folders(folder) and proc.poll() is None and time.time() < deadline:
                    time.sleep(0.01)
                time.sleep(random.Random('{}-{}'.format(name, seed)).uniform(0, 0.5))
                assert proc.poll() is None, 'the run ended before it could be interrupted'
                proc.send_signal(signum)
                proc.wait(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        res = subprocess.CompletedProcess([], proc.returncode, (tmp_path / 'out.txt').read_text(),
                                          (tmp_path / 'err.txt').read_text())
        check_interrupted(res, folder, signame)
        resume_to_the_end(config, archive, folder, reference(name)[0])
