"""Saved models: --eval-only reproduces the reported test error; the .nnp runs like the training code."""
import json

import numpy as np
import nnabla as nn
import pytest
from nnabla.utils.nnp_graph import NnpLoader

import darts_train
from helpers import TRAIN_TINY, eval_graph, one_line, train, write_archive


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A finished tiny retraining: (archive, monitor folder)."""
    folder = tmp_path_factory.mktemp('deploy')
    archive = write_archive(folder / 'c.tar.gz', 8, 13)
    proc = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 4, '-e', 2, '-m', folder / 'run')
    assert proc.returncode == 0, proc.stderr
    assert (folder / 'run' / 'learning_curves.png').read_bytes()[:4] == b'\x89PNG'
    return archive, folder / 'run'


@pytest.mark.parametrize('source', ['params.h5', 'checkpoint'])
def test_eval_only_reproduces_the_reported_test_error(trained, source):
    archive, run = trained
    path = run / source if source == 'params.h5' else sorted(run.glob('checkpoint_*'))[-1]
    proc = train(*TRAIN_TINY, '--dataset-path', archive, '-b', 5, '--eval-only', '--model-load-path', path)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((run / 'results.json').read_text())
    assert 'test error: {:.2f}%'.format(100 * results['test_error']) in proc.stdout
    assert 'test loss: {:.4f}'.format(results['test_loss']) in proc.stdout


def test_eval_only_refuses_parameters_of_another_architecture(trained):
    archive, run = trained
    v1 = TRAIN_TINY[:3] + ['DARTS_V1'] + TRAIN_TINY[4:]
    proc = train(*v1, '--dataset-path', archive, '--eval-only', '--model-load-path', run / 'params.h5')
    one_line(proc, 'does not match this architecture')
    one_line(train(*TRAIN_TINY, '--eval-only', '--dataset-path', archive), 'need --model-load-path')


def test_nnp_runs_to_the_outputs_of_the_training_code(trained, tmp_path):
    _, run = trained
    exported = tmp_path / 'new folder' / 'again.nnp'  # a folder --export-nnp makes
    proc = train(*TRAIN_TINY, '--export-nnp', exported, '--model-load-path', run / 'params.h5')
    assert proc.returncode == 0, proc.stderr
    args = darts_train.parse('train', TRAIN_TINY)
    x = np.random.RandomState(0).randn(3, 3, 32, 32).astype(np.float32)
    nn.clear_parameters()
    test = eval_graph(args, 3)
    darts_train.load_into_network(str(run / 'params.h5'))
    test['x'].d = x
    test['logits'].forward()
    expected = test['logits'].d.copy()
    for path in (run / 'model.nnp', exported):
        nn.clear_parameters()
        net = NnpLoader(str(path)).get_network('darts', batch_size=3)
        net.inputs['x'].d = x
        y = net.outputs['y']
        y.forward()
        np.testing.assert_allclose(y.d, expected, rtol=1e-4, atol=1e-5)


def test_an_nnp_under_a_regular_file_is_refused_before_any_work(tmp_path):
    """--export-nnp names a path whose ancestor is a file: refused before the parameters are read."""
    afile = tmp_path / 'a-file'
    afile.write_text('not a folder')
    target = afile / 'sub' / 'm.nnp'
    proc = train(*TRAIN_TINY, '--export-nnp', target, '--model-load-path', tmp_path / 'no-params.h5')
    line = one_line(proc, '--export-nnp', str(target), '{} is not a folder'.format(afile))
    assert 'no-params.h5' not in line
    assert afile.read_text() == 'not a folder'
