"""End-to-end tests of darts_train.py as a user runs it: exit codes, messages, files, resume, signals."""
import glob
import json
import math
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import nnabla as nn
import pytest

import genotype
from helpers import (CIFAR_MEAN, CIFAR_STD, ROOT, TRAIN_TINY, checkpoint_folders, error_lines, one_line, read_h5,
                     read_series, snapshot, train, write_archive)
from spaces.darts_cnn.network import network

SERIES = ('Training-loss', 'Training-error', 'Test-loss', 'Test-error', 'Learning-rate', 'Elapsed-time')


def results(folder):
    with open(os.path.join(str(folder), 'results.json')) as f:
        return json.load(f)


def assert_same_run(a, b, epochs):
    """Two runs ended with identical weights, results and series (bar the elapsed time)."""
    pa, pb = read_h5(os.path.join(str(a), 'params.h5')), read_h5(os.path.join(str(b), 'params.h5'))
    assert sorted(pa) == sorted(pb) and len(pa) > 0
    for k in pa:
        assert np.array_equal(pa[k], pb[k]), k
    ra, rb = results(a), results(b)
    for key in ('test_error', 'test_loss', 'epochs', 'iterations', 'parameters'):
        assert ra[key] == rb[key], key
    for name in SERIES + ('Training-objective',):
        sa, sb = read_series(a, name), read_series(b, name)
        assert [int(i) for i, _ in sb] == list(range(1, epochs + 1)), (name, sb)
        if name != 'Elapsed-time':
            assert sa == sb, name


@pytest.fixture(scope='module')
def reference(archive, tmp_path_factory):
    """An uninterrupted 2-epoch run, 10 iterations an epoch, checkpoints every 3 iterations."""
    folder = tmp_path_factory.mktemp('runs') / 'A'
    res = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 4, '-e', 2, '-s', 3, '-m', folder)
    assert res.returncode == 0, res.stderr
    return folder, res


def _test_images(archive):
    with tarfile.open(archive) as tar:
        batch = pickle.load(tar.extractfile('cifar-10-batches-py/test_batch'), encoding='bytes')
    x = batch[b'data'].reshape(-1, 3, 32, 32) / 255.0
    x = (x - np.array(CIFAR_MEAN).reshape(1, 3, 1, 1)) / np.array(CIFAR_STD).reshape(1, 3, 1, 1)
    return x, np.array(batch[b'labels'])


# ---------------------------------------------------------------- a full run


def test_full_run_writes_results_series_and_checkpoints(reference):
    folder, res = reference
    printed = re.findall(r'^test error: (\d+\.\d\d)%$', res.stdout, re.M)
    assert len(printed) == 1
    r = results(folder)
    assert set(r) >= {'test_error', 'test_loss', 'epochs', 'parameters', 'seconds'}
    assert 0 <= r['test_error'] <= 1 and printed[0] == '{:.2f}'.format(100 * r['test_error'])
    assert r['test_error'] * 10 == pytest.approx(round(r['test_error'] * 10))  # 10 test images
    assert r['test_loss'] > 0 and math.isfinite(r['test_loss'])
    assert r['epochs'] == 2 and r['iterations'] == 20 and r['seconds'] > 0
    assert 'trainable parameters: {}'.format(r['parameters']) in res.stdout
    # the count of the network proper (no aux head), counted here from a fresh build
    nn.clear_parameters()
    network(nn.Variable((1, 3, 32, 32)), genotype.load('DARTS_V2'), 4, 3)
    assert r['parameters'] == sum(int(np.prod(v.shape)) for v in nn.get_parameters(grad_only=True).values())
    nn.clear_parameters()

    for name in SERIES:
        lines = read_series(folder, name)
        assert [int(i) for i, _ in lines] == [1, 2], name
        assert all(math.isfinite(float(v)) for _, v in lines), name
    lr = [float(v) for _, v in read_series(folder, 'Learning-rate')]
    assert lr == [pytest.approx(0.025), pytest.approx(0.025 * (1 + math.cos(math.pi / 2)) / 2)]
    assert float(read_series(folder, 'Test-error')[-1][1]) == pytest.approx(r['test_error'], rel=1e-5)
    assert float(read_series(folder, 'Test-loss')[-1][1]) == pytest.approx(r['test_loss'], rel=1e-5)
    assert all(0 <= float(v) <= 1 for _, v in read_series(folder, 'Training-error'))
    # the aux head is on by default: the objective includes 0.4 * aux loss on top of the loss
    assert all(float(o) > float(l) for (_, o), (_, l) in
               zip(read_series(folder, 'Training-objective'), read_series(folder, 'Training-loss')))

    cps = checkpoint_folders(folder, complete=False)
    assert [os.path.basename(c) for c in cps] == ['checkpoint_000000018', 'checkpoint_000000020']
    for c in cps:
        assert sorted(os.listdir(c)) == ['params.h5', 'solver_weights.h5', 'state.json']
    with open(os.path.join(cps[-1], 'state.json')) as f:
        state = json.load(f)
    assert state['iteration'] == 20 and state['epochs_done'] == 2
    assert os.path.isfile(os.path.join(str(folder), 'params.h5'))
    assert not glob.glob(os.path.join(str(folder), '.checkpoint*'))


def test_reported_test_error_is_that_of_the_saved_weights(reference, archive):
    folder, _ = reference
    x, labels = _test_images(archive)
    nn.clear_parameters()
    nn.load_parameters(os.path.join(str(folder), 'params.h5'))
    xv = nn.Variable.from_numpy_array(x.astype(np.float32))
    logits, _ = network(xv, genotype.load('DARTS_V2'), 4, 3, test=True)
    logits.forward()
    z = logits.d.astype(np.float64)
    nn.clear_parameters()
    error = np.mean(z.argmax(axis=1) != labels)
    m = z.max(axis=1)
    loss = np.mean(m + np.log(np.exp(z - m[:, None]).sum(axis=1)) - z[np.arange(len(labels)), labels])
    r = results(folder)
    assert r['test_error'] == pytest.approx(error, abs=1e-9)
    assert r['test_loss'] == pytest.approx(loss, rel=1e-4)


# ---------------------------------------------------------------- resume


@pytest.mark.parametrize('interval, resumed_from', [(3, 'checkpoint_000000018'), (0, 'checkpoint_000000010')],
                         ids=['mid-epoch', 'epoch-end'])
def test_stop_and_resume_equals_the_uninterrupted_run(reference, archive, tmp_path, interval, resumed_from):
    folder = tmp_path / 'B'
    flags = TRAIN_TINY + ['--dataset-path', archive, '-b', 4, '-e', 2, '-s', interval, '-m', folder]
    assert train(*flags).returncode == 0
    cps = checkpoint_folders(folder, complete=False)
    assert [os.path.basename(c) for c in cps] == [resumed_from, 'checkpoint_000000020']
    shutil.rmtree(cps[-1])
    for name in ('params.h5', 'results.json'):
        os.remove(str(folder / name))
    res = train(*flags, '--resume', 'True')
    assert res.returncode == 0, res.stderr
    assert re.search(r'^test error: \d+\.\d\d%$', res.stdout, re.M)
    assert_same_run(reference[0], folder, 2)


def test_resume_with_a_batch_size_that_does_not_divide_the_data(archive, tmp_path):
    flags = TRAIN_TINY + ['--dataset-path', archive, '-b', 6, '-e', 2, '-s', 4]
    a, b = tmp_path / 'A', tmp_path / 'B'
    assert train(*flags, '-m', a).returncode == 0
    shutil.copytree(str(a), str(b))  # the same seeded run, in a folder of its own (a checkpoint holds no path)
    shutil.rmtree(checkpoint_folders(b, complete=False)[-1])  # back to iteration 8, in the second epoch of 6
    res = train(*flags, '-m', b, '--resume')
    assert res.returncode == 0, res.stderr
    assert_same_run(a, b, 2)


def test_sigterm_saves_a_checkpoint_and_resume_finishes_the_same_run(tmp_path):
    data = str(write_archive(tmp_path / 'big.tar.gz', 20, 10))  # 100 images: 25 iterations an epoch
    flags = TRAIN_TINY + ['--dataset-path', data, '-b', 4, '-e', 2, '-s', 5]
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    out_path, err_path = tmp_path / 'stdout.txt', tmp_path / 'stderr.txt'
    with open(str(out_path), 'w') as out_file, open(str(err_path), 'w') as err_file:  # files: no pipe to fill
        proc = subprocess.Popen([sys.executable, 'darts_train.py'] + [str(a) for a in flags + ['-m', stopped]],
                                cwd=ROOT, stdout=out_file, stderr=err_file)
        try:
            deadline = time.time() + 120
            while not checkpoint_folders(stopped, complete=False) and proc.poll() is None and time.time() < deadline:
                time.sleep(0.005)
            assert proc.poll() is None, 'the run ended before it could be interrupted'
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    out, err = out_path.read_text(), err_path.read_text()
    assert proc.returncode == 128 + signal.SIGTERM == 143, err
    line = one_line(subprocess.CompletedProcess([], proc.returncode, out, err), 'SIGTERM',
                          'checkpoint saved', '--resume', code=143)
    newest = checkpoint_folders(stopped, complete=False)[-1]
    assert newest in line
    with open(os.path.join(newest, 'state.json')) as f:
        assert 0 < json.load(f)['iteration'] < 50
    assert not os.path.exists(str(stopped / 'results.json'))

    res = train(*flags, '-m', stopped, '--resume', 'True')
    assert res.returncode == 0, res.stderr
    assert train(*flags, '-m', straight).returncode == 0
    assert_same_run(straight, stopped, 2)


def test_a_new_run_over_an_existing_one_is_refused_and_touches_nothing(reference, archive, tmp_path):
    folder = tmp_path / 'A'
    shutil.copytree(str(reference[0]), str(folder))
    before = snapshot(folder)
    res = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 4, '-e', 2, '-m', folder)
    one_line(res, str(folder), '--resume')
    assert snapshot(folder) == before


def test_resume_without_a_checkpoint_is_refused(archive, tmp_path):
    res = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 4, '-e', 1, '-m', tmp_path / 'none', '--resume', 'True')
    one_line(res, '--resume', 'no checkpoint')
    assert not glob.glob(str(tmp_path / 'none' / '*.series.txt'))


def test_resume_with_another_num_cells_is_refused(reference, archive, tmp_path):
    folder = tmp_path / 'A'
    shutil.copytree(str(reference[0]), str(folder))
    before = snapshot(folder)
    flags = TRAIN_TINY[:5] + ['2'] + TRAIN_TINY[6:]  # --num-cells 2
    res = train(*flags, '--dataset-path', archive, '-b', 4, '-e', 2, '-m', folder, '--resume', 'True')
    one_line(res, 'num_cells', '3', '2')
    assert snapshot(folder) == before


def test_resume_from_a_checkpoint_of_another_code_version_is_refused(reference, archive, tmp_path):
    """A checkpoint whose parameters the network no longer has (here: depthwise weights saved
    under the earlier grouped-convolution name and shape) is refused, not silently half-loaded."""
    import h5py
    folder = tmp_path / 'A'
    shutil.copytree(str(reference[0]), str(folder))
    params = os.path.join(checkpoint_folders(folder, complete=False)[-1], 'params.h5')
    with h5py.File(params, 'r+') as f:
        names = []
        f.visit(lambda name: names.append(name) if isinstance(f[name], h5py.Dataset) else None)
        old = [n for n in names if n.endswith('dw/depthwise_conv/W')][0]
        data, attrs = f[old][()], dict(f[old].attrs)
        del f[old]
        f[old.replace('depthwise_conv', 'conv')] = data[:, None]  # (C, 1, k, k) as grouped conv kept it
        f[old.replace('depthwise_conv', 'conv')].attrs.update(attrs)
    before = snapshot(folder)
    res = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 4, '-e', 3, '-m', folder, '--resume', 'True')
    one_line(res, 'does not match this architecture', old, 'missing')
    assert snapshot(folder) == before


# ---------------------------------------------------------------- refused flags

# The impossible values of every flag are in tests/faults/test_bad_args.py (its quick cases run in
# `make test` too); here are the refusals that need the data or another wording.
BAD_FLAGS = [
    (['--output-filter', '3'], ['--output-filter', 'even']),
    (['--num-nodes', '2'], ['--num-nodes']),
    (['--cutout', 'maybe'], ['--cutout', 'maybe']),
    (['-e', 'two'], ['--epoch', 'two']),
    (['--min-model-lr', '0.5'], ['--min-model-lr']),
    (['-b', '41'], ['--batch-size 41', '40 training images']),
    (['-b', '1'], ['--batch-size 1', 'one value per channel', '--auxiliary False']),  # the aux head's 1x1 BN
]


@pytest.mark.parametrize('extra, fragments', BAD_FLAGS, ids=[' '.join(f) for f, _ in BAD_FLAGS])
def test_bad_flags_are_one_line_errors(archive, tmp_path, extra, fragments):
    res = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 4, '-e', 1, '-m', tmp_path / 'm', *extra)
    one_line(res, *fragments)
    assert 'trainable parameters' not in res.stdout  # refused before the training started
    assert not os.path.exists(str(tmp_path / 'm'))


def test_batch_size_1_trains_without_the_aux_head(archive, tmp_path):
    folder = tmp_path / 'm'
    res = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 1, '-e', 1, '--train-images', 3, '--test-images', 2,
                '--auxiliary', 'False', '-m', folder)
    assert res.returncode == 0, res.stderr
    assert [i for i, _ in read_series(folder, 'Training-loss')] == ['1']
    assert all(math.isfinite(float(v)) for _, v in read_series(folder, 'Training-loss'))


# ---------------------------------------------------------------- inputs that are not files of their kind


@pytest.mark.parametrize('flags, fragments', [
    (['--dataset-path', '/dev/zero'], ['cannot read dataset /dev/zero: it is not a regular file or a folder']),
    (['--dataset-path', 'NOWHERE'], ['cannot read dataset NOWHERE: it does not exist']),
    (['--eval-only', '--model-load-path', '/dev/zero'], ['cannot read parameters /dev/zero: it is not a regular file']),
    (['--eval-only', '--model-load-path', 'HUGE'], ['cannot read parameters HUGE: it is ', 'MB, larger than']),
], ids=['dataset /dev/zero', 'missing dataset', 'parameters /dev/zero', 'parameters too large'])
def test_inputs_that_cannot_be_what_they_should_be_are_refused_before_they_are_read(archive, tmp_path, flags,
                                                                                   fragments):
    """A device would fill the memory: it is refused at once, as a missing file is."""
    huge, nowhere = tmp_path / 'huge.h5', tmp_path / 'nowhere.tar.gz'
    with open(str(huge), 'wb') as f:
        f.truncate(2049 << 20)  # sparse: no disk space used; saved parameters are 2048 MB at most
    names = {'NOWHERE': str(nowhere), 'HUGE': str(huge)}
    flags = [names.get(f, f) for f in flags]
    fragments = [f.replace('NOWHERE', str(nowhere)).replace('HUGE', str(huge)) for f in fragments]
    monitor = tmp_path / 'm'
    res = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 4, '-e', 1, '-m', monitor, *flags, timeout=120)
    one_line(res, *fragments)
    assert 'trainable parameters' not in res.stdout and 'test error' not in res.stdout
    assert not os.path.exists(str(monitor))


# ---------------------------------------------------------------- summary and booleans


def test_summary_only_prints_the_paper_count_without_touching_data(tmp_path):
    monitor = tmp_path / 'm'
    res = train('--model-arch-name', 'DARTS_V2', '--summary-only', '--dataset-path', tmp_path / 'nowhere',
                '-m', monitor)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-2:] == ['trainable parameters: 3349342 (aux head: 476426)',
                                          'multiply-adds: 528359040 per 32x32 image']
    assert '  ops at node 5: identity from node 0, dil_conv_3x3 from node 2' in res.stdout
    assert not os.path.exists(str(monitor))
    assert error_lines(res.stderr) == []


@pytest.mark.parametrize('value, shown', [('False', 'off'), ('no', 'off'), ('0', 'off'), ('yes', '476426')])
def test_auxiliary_flag_in_the_summary(value, shown):
    res = train('--model-arch-name', 'DARTS_V2', '--summary-only', 'True', '--auxiliary', value)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[-2] == 'trainable parameters: 3349342 (aux head: {})'.format(shown)


def test_auxiliary_false_trains_without_the_aux_loss(archive, tmp_path):
    folder = tmp_path / 'noaux'
    res = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 8, '-e', 1, '-m', folder, '--auxiliary', 'False',
                '--cutout', 'no')
    assert res.returncode == 0, res.stderr
    assert read_series(folder, 'Training-objective') == read_series(folder, 'Training-loss')
    assert not any(k.startswith('aux/') for k in read_h5(folder / 'params.h5'))


# ---------------------------------------------------------------- divergence


@pytest.fixture(scope='module')
def diverged(archive, tmp_path_factory):
    """A run whose loss becomes NaN at the second iteration, after a checkpoint at the first."""
    folder = tmp_path_factory.mktemp('diverged') / 'm'
    res = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 4, '-e', 1, '-s', 1, '--model-lr', '1e12',
                '--grad-clip-value-model', '1e30', '-m', folder)
    return folder, res


def test_divergence_stops_with_exit_1_and_keeps_the_last_checkpoint(diverged):
    folder, res = diverged
    assert res.returncode == 1, res.stderr
    assert 'Traceback' not in res.stderr
    found = re.search(r'error: (Training loss|Training error|Training objective|the weights) became (nan|inf) '
                      r'at iteration (\d+)(?: \(\S+\))?; the last checkpoint in (\S+) is left as it was', res.stderr)
    assert found and found.group(4) == str(folder), res.stderr
    # with -s 1 every finished iteration has a checkpoint: the newest is the one just before the bad step
    newest = checkpoint_folders(folder, complete=False)[-1]
    with open(os.path.join(newest, 'state.json')) as f:
        state = json.load(f)
    assert state['iteration'] == int(found.group(3)) >= 1
    assert all(math.isfinite(v) for v in state['sums'].values())
    assert not os.path.exists(str(folder / 'results.json')) and not os.path.exists(str(folder / 'params.h5'))


def test_divergence_error_is_a_line_of_its_own(diverged):
    _, res = diverged
    assert any(line.startswith('error: ') for line in res.stderr.splitlines()), res.stderr


# ---------------------------------------------------------------- cells of other sizes, an output folder that is a file


def test_num_nodes_3_is_refused(tmp_path):
    empty = tmp_path / 'empty.json'
    empty.write_text('{"arch_normal": {}, "arch_reduction": {}}')
    res = train('--num-nodes', '3', '--model-arch-name', empty, '--summary-only')
    one_line(res, '--num-nodes')


def test_num_nodes_4_is_a_cell_with_one_intermediate_node(tmp_path):
    one = tmp_path / 'one.json'
    one.write_text('{"arch_normal": {"2": [[2, 0], [6, 1]]}, "arch_reduction": {"2": [[4, 0], [6, 1]]}}')
    res = train('--num-nodes', '4', '--model-arch-name', one, '--summary-only', '--num-cells', '3',
                '--output-filter', '4', '-f', '0')
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1] == '  ops at node 2: sep_conv_3x3 from node 0, identity from node 1'


def test_monitor_path_that_is_a_file_is_refused_up_front(archive, tmp_path):
    taken = tmp_path / 'taken'
    taken.write_text('not a folder')
    res = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 4, '-e', 1, '-m', taken)
    one_line(res, str(taken))
    assert 'trainable parameters' not in res.stdout
