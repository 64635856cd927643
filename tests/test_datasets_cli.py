"""Both jobs on the datasets beyond CIFAR-10, end to end as a user runs them: the summaries without
data, CIFAR-100 with top-5, SVHN, image folders (the CIFAR network at 32 px, the ImageNet network
above 64), bad images in a folder, an exact resume with data workers; and the top-5 error and the
label smoothing against numpy."""
import json
import os
import re
import shlex
import shutil

import numpy as np
import nnabla as nn
import pytest

import data_iterator
import datasets
from args import TRAIN, parse
from errors import UserError
from helpers import (NO_EIGENVALUE, SEARCH_TINY, TRAIN_TINY, checkpoint_folders, cifar_recipe, error_lines, eval_graph,
                     one_line, run_cli, train, write_cifar100, write_image_folder, write_svhn)
from loop import InterruptFlag
from tasks.classification import TOP5, Data, evaluate, training_loss
from test_train_cli import assert_same_run, results

SMALL = TRAIN_TINY + ['-b', '4', '-e', '1']


DATA_FLAGS = [  # (flags, fragment of the one line), refused by args.parse before anything is read
    (['--image-size', '64'], '--image-size is for image folders: cifar10 images are 32x32'),
    (['--dataset', 'folder', '--image-size', '30'], '--image-size 30 must be a multiple of 4'),
    (['--dataset', 'folder', '--image-size', '128'], '--image-size 128 leaves 4x4 maps for the aux head, which '
                                                     'needs 7x7: use --image-size 224 or more, or --auxiliary False'),
    (['--dataset', 'folder', '--image-size', '48', '--cutout-length', '49'], '--cutout-length must be in 1..48'),
    (['--data-workers', '-1'], '--data-workers must be non-negative'),
    (['--color-jitter', '0.4', '0.4', '0.4'], 'expected 4 arguments'),
    (['--color-jitter', '0', '0', '0', '0.6'], '--color-jitter takes four non-negative numbers, the hue at most 0.5'),
    (['--color-jitter', '0', 'nan', '0', '0'], '--color-jitter takes four non-negative numbers'),
    (['--lr-schedule', 'step'], "invalid choice: 'step'"),
    (['--lr-gamma', '0'], '--lr-gamma must be in (0, 1]'),
    (['--momentum', '1'], '--momentum must be in [0, 1)'),
    (['--label-smoothing', '1'], '--label-smoothing must be in [0, 1)'),
    (['--tensorboard-every', '0'], '--tensorboard-every must be positive'),
]


@pytest.mark.parametrize('flags, fragment', DATA_FLAGS, ids=[' '.join(f) for f, _ in DATA_FLAGS])
def test_impossible_data_flags_are_refused_in_one_line(flags, fragment):
    with pytest.raises(UserError) as error:
        parse(TRAIN, TRAIN_TINY + flags)
    assert fragment in str(error.value) and '\n' not in str(error.value)


def summary_lines(*flags):
    res = train('--model-arch-name', 'DARTS_V2', '--summary-only', *flags)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()[-2:]


def test_summaries_take_the_classes_and_sizes_of_the_dataset_without_reading_it(tmp_path):
    assert summary_lines('--dataset', 'imagenet') == [
        'trainable parameters: 4718752 (aux head: 1260776)', 'multiply-adds: 529911552 per 224x224 image']
    assert summary_lines('--dataset', 'cifar100')[0] == 'trainable parameters: 3401272 (aux head: 545636)'
    assert summary_lines() == ['trainable parameters: 3349342 (aux head: 476426)',
                               'multiply-adds: 528359040 per 32x32 image']
    root = write_image_folder(tmp_path / 'f')  # 3 classes: CIFAR-10's counts less 7 outputs of each classifier
    assert summary_lines('--dataset', 'folder', '--dataset-path', root)[0] == \
        'trainable parameters: {} (aux head: {})'.format(3349342 - 577 * 7, 476426 - 769 * 7)
    # an ImageNet folder's classifiers follow its class folders, as for any image folder at 224 px
    paper = ['--num-cells', '14', '-f', '32']
    assert summary_lines('--dataset', 'imagenet', '--dataset-path', root) == \
        summary_lines('--dataset', 'folder', '--dataset-path', root, '--image-size', '224', *paper) != \
        summary_lines('--dataset', 'imagenet')


def test_cifar100_retraining_logs_and_writes_the_top5_error(tmp_path):
    archive = write_cifar100(tmp_path / 'c100.tar.gz', 16, 12)
    res = train(*SMALL, '--dataset', 'cifar100', '--dataset-path', archive, '-m', tmp_path / 'm')
    assert res.returncode == 0, res.stderr
    r = results(tmp_path / 'm')
    assert r['dataset'] == 'cifar100' and 0 <= r['test_error'] <= 1 and r['test_error_top5'] <= r['test_error']
    assert 'test error top-5: {:.2f}%'.format(100 * r['test_error_top5']) in res.stdout
    with open(str(tmp_path / 'm' / 'Test-error-top-5.series.txt')) as f:
        epoch, value = f.read().split()
    assert epoch == '1' and float(value) == pytest.approx(r['test_error_top5'])


def test_svhn_search_writes_an_arch(tmp_path):
    folder = write_svhn(tmp_path / 'svhn', 16, 4)
    res = run_cli('darts_search.py', SEARCH_TINY + NO_EIGENVALUE + ['-e', '1', '--dataset', 'svhn', '--dataset-path',
                                                                    folder, '-m', tmp_path / 's',
                                                                    '--model-arch-name', tmp_path / 'arch.json'])
    assert res.returncode == 0, res.stderr
    assert os.path.exists(str(tmp_path / 'arch.json'))
    assert_the_hint_retrains_on(res.stdout, '10 classes (svhn)', tmp_path)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    """A tiny image folder of 3 classes, 8 training and 2 test images each, JPEG and PNG of 3 sizes."""
    return write_image_folder(tmp_path_factory.mktemp('images') / 'f', train=8, val=2)


def test_an_image_folder_retrains_at_32_pixels_and_reports_a_bad_image_once(folder, tmp_path):
    root = tmp_path / 'f'
    shutil.copytree(str(folder), str(root))
    (root / 'train' / 'bee' / '003.png').write_bytes(b'not a png')
    res = train(*TRAIN_TINY, '-b', '4', '-e', '1', '--dataset', 'folder', '--dataset-path', root,
                '--data-workers', '1', '-m', tmp_path / 'm')
    assert res.returncode == 0, res.stderr
    warnings = [line for line in error_lines(res.stderr) if line.startswith('warning:')]
    assert len(warnings) == 1 and 'bee/003.png' in warnings[0] and 'replaced by the next image' in warnings[0]
    assert results(tmp_path / 'm')['iterations'] == 6  # 24 images, batch 4


def test_an_image_folder_above_64_pixels_takes_the_imagenet_network(folder, tmp_path):
    res = train(*SMALL, '--dataset', 'folder', '--dataset-path', folder, '--image-size', '96', '--auxiliary', 'False',
                '--label-smoothing', '0.1', '--color-jitter', '0.4', '0.4', '0.4', '0.2', '-m', tmp_path / 'm')
    assert res.returncode == 0, res.stderr
    assert 0 <= results(tmp_path / 'm')['test_error'] <= 1
    summary = summary_lines('--dataset', 'folder', '--dataset-path', folder, '--image-size', '96', '-f', '0',
                            '--output-filter', '4', '--num-cells', '3', '--auxiliary', 'False')
    assert summary[1].endswith('per 96x96 image')
    assert summary[0] == 'trainable parameters: {} (aux head: off)'.format(results(tmp_path / 'm')['parameters'])


def test_a_search_on_an_image_folder_with_workers(folder, tmp_path):
    res = run_cli('darts_search.py', SEARCH_TINY + NO_EIGENVALUE + ['-e', '1', '--dataset', 'folder',
                                                    '--dataset-path', folder, '--data-workers', '2', '-m',
                                                    tmp_path / 's', '--model-arch-name', tmp_path / 'arch.json'])
    assert res.returncode == 0, res.stderr
    with open(str(tmp_path / 'arch.json')) as f:
        assert set(json.load(f)) == {'arch_normal', 'arch_reduction'}
    assert_the_hint_retrains_on(res.stdout, '3 classes (folder)', tmp_path)


def assert_the_hint_retrains_on(stdout, classes, tmp_path):
    """The retraining command that the search printed, run with --summary-only, sees its data."""
    lines = stdout.splitlines()
    command = shlex.split(lines[lines.index(next(l for l in lines if l.endswith('retrain it with:'))) + 1])
    assert command[:2] == ['python', 'darts_train.py']
    summary = train(*command[2:], '-c', 'cpu', '--summary-only', cwd=tmp_path)
    assert summary.returncode == 0, summary.stderr
    assert 'input: 32x32 images of {}'.format(classes) in summary.stdout


def test_resume_with_other_data_workers_equals_the_uninterrupted_run(folder, tmp_path):
    flags = TRAIN_TINY + ['-b', '4', '-e', '2', '-s', '4', '--dataset', 'folder', '--dataset-path', folder]
    a, b = tmp_path / 'A', tmp_path / 'B'
    assert train(*flags, '--data-workers', '2', '-m', a).returncode == 0
    shutil.copytree(str(a), str(b))  # the same run, stopped after its last checkpoint but one:
    shutil.rmtree(checkpoint_folders(b, complete=False)[-1])  # back to iteration 8, in the second epoch
    for name in ('params.h5', 'results.json'):
        os.remove(str(b / name))
    res = train(*flags, '--data-workers', '0', '-m', b, '--resume')  # decoded on the iterator's thread now
    assert res.returncode == 0, res.stderr
    assert re.search(r'^test error: \d+\.\d\d%$', res.stdout, re.M)
    assert_same_run(a, b, 2)


def test_an_unusable_folder_is_one_line_before_any_work(folder, tmp_path):
    root = tmp_path / 'f'
    shutil.copytree(str(folder), str(root))
    shutil.rmtree(str(root / 'val' / 'cat'))
    for program, extra in (('darts_train.py', SMALL), ('darts_search.py', SEARCH_TINY + ['-e', '1', '--model-arch-name',
                                                                                          tmp_path / 'arch.json'])):
        res = run_cli(program, extra + ['--dataset', 'folder', '--dataset-path', root, '-m', tmp_path / 'm'])
        one_line(res, 'must hold the same class folders', 'cat is only in')
        assert not os.path.exists(str(tmp_path / 'm')) or os.listdir(str(tmp_path / 'm')) == []
    one_line(train(*SMALL, '--dataset', 'imagenet', '-m', tmp_path / 'm'), 'needs --dataset-path', 'licence',
             'train/<class>/*')


# ---------------------------------------------------------------- top-5 and label smoothing, against numpy


def test_the_top5_error_of_an_evaluation_is_numpys(fresh_parameters):
    """Labels are chosen from the model's own ranking, so both errors are strictly between 0 and 1."""
    args = parse(TRAIN, TRAIN_TINY + ['-b', '8'])
    test = eval_graph(args, 8, Data(32, 100, False))
    pixels = np.random.RandomState(3).randint(0, 256, (21, 3, 32, 32)).astype(np.uint8)
    logits = []
    for x, _, n in data_iterator.eval_batches(datasets.Split(np.zeros(21, int), pixels),
                                              cifar_recipe(augment=False), 8):
        test['x'].d = x
        test['logits'].forward()
        logits.append(test['logits'].d[:n].copy())
    ranking = np.argsort(-np.concatenate(logits), axis=1)
    places = np.arange(21) % 7
    labels = ranking[np.arange(21), np.where(places < 5, places, 50)]
    split = datasets.Split(labels, pixels)
    with InterruptFlag() as interrupts:
        values = evaluate(test, data_iterator.eval_batches(split, cifar_recipe(augment=False), 8), 21, interrupts)
    assert values[TOP5] == pytest.approx(6 / 21)
    assert values['Test error'] == pytest.approx(18 / 21)


def test_label_smoothing_is_the_paper_loss(fresh_parameters):
    rng = np.random.RandomState(0)
    logits, y = rng.randn(6, 7), rng.randint(0, 7, (6, 1))
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    for s in (0.0, 0.1):
        targets = (1 - s) * np.eye(7)[y[:, 0]] + s / 7  # the paper's code: (1 - s) one-hot + s / K
        loss = training_loss(nn.Variable.from_numpy_array(logits), nn.Variable.from_numpy_array(y), s)
        loss.forward()
        assert float(loss.d) == pytest.approx((-targets * log_p).sum(axis=1).mean(), rel=1e-5)
