"""The tests' launcher (tests/launcher.py) runs a script as a process of its own would: the same
exit code, stdout and stderr, in the job's folder and environment, killed at its timeout."""
import subprocess
import time

import pytest

from helpers import SEARCH_TINY, TRAIN_TINY, run_cli

JOBS = [  # (program, argv): a success printing to stdout, a refusal, argparse's own exits
    ('darts_train.py', ['-c', 'cpu', '--model-arch-name', 'DARTS_V2', '--summary-only']),
    ('darts_train.py', ['-c', 'cpu', '--epoch', '-1']),
    ('darts_search.py', ['--help']),
    ('darts_seeds.py', ['--no-such-flag']),
]


@pytest.mark.parametrize('program, argv', JOBS, ids=[' '.join([p] + a)[:40] for p, a in JOBS])
def test_a_job_in_the_launcher_is_the_job_in_a_process_of_its_own(program, argv, monkeypatch):
    forked = run_cli(program, argv)
    monkeypatch.setenv('DARTS_TESTS_LAUNCHER', '0')
    alone = run_cli(program, argv)
    assert (forked.returncode, forked.stdout, forked.stderr) == (alone.returncode, alone.stdout, alone.stderr)
    assert forked.stdout or forked.stderr


def test_the_launcher_runs_in_the_job_s_folder_and_environment(tmp_path, monkeypatch):
    (tmp_path / 'arch.json').write_text('{}')
    res = run_cli('darts_search.py', SEARCH_TINY + ['--model-arch-name', 'arch.json'], cwd=tmp_path)
    assert res.returncode == 2 and 'already exists' in res.stderr, res.stderr  # the relative path is tmp_path's
    monkeypatch.setenv('HOME', str(tmp_path))  # the data folder, and the tests-only download address
    monkeypatch.setenv('DARTS_DATA_URL', 'file:///no-such-folder-of-the-launcher-test')
    res = run_cli('darts_train.py', TRAIN_TINY + ['-b', '4', '-e', '1', '-m', tmp_path / 'm'])
    assert res.returncode == 2 and 'file:///no-such-folder-of-the-launcher-test/' in res.stderr, res.stderr


def test_a_job_past_its_timeout_is_killed(tmp_path, archive):
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_cli('darts_search.py', SEARCH_TINY + ['--dataset-path', archive, '-m', tmp_path / 'm',
                                                 '--model-arch-name', tmp_path / 'a.json'], timeout=0.5)
    assert time.monotonic() - start < 5
    assert run_cli('darts_train.py', ['-c', 'cpu', '--epoch', '-1']).returncode == 2  # the launcher goes on
