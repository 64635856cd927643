"""The ONNX export: onnxruntime's logits equal nnabla's for every op of the search space and any
batch size, the converter's default table is the trap it avoids, and the command line around it."""
import subprocess
import sys

import numpy as np
import nnabla as nn
import pytest

import darts_train
import export
import model_eval
import spaces
from helpers import ROOT, write_archive
from errors import UserError
from tasks.classification import CIFAR10

ort = pytest.importorskip('onnxruntime', reason='the ONNX export extras are not installed: '
                                                'pip install --no-deps -r requirements-export.txt')
onnx = pytest.importorskip('onnx', reason='the ONNX export extras are not installed')
pytestmark = pytest.mark.filterwarnings('ignore:tostring:DeprecationWarning')  # nnabla-converter's numpy call

TINY = ['-c', 'cpu', '--num-cells', '3', '--output-filter', '4', '-f', '0']
# op ids 0..6 (every op but zero), avg_pool_3x3 (5) on normal edges and on stride-1 and stride-2
# reduction edges, as the paper's cells do not have it (DARTS_V2 has none, DARTS_V1 one)
ALL_OPS = {'arch_normal': {'2': [[0, 0], [1, 1]], '3': [[2, 0], [3, 1]], '4': [[4, 2], [5, 3]], '5': [[6, 0], [5, 1]]},
           'arch_reduction': {'2': [[5, 0], [4, 1]], '3': [[0, 0], [1, 1]], '4': [[2, 0], [3, 2]],
                              '5': [[6, 1], [5, 4]]}}
# NAS-Bench-201's network: its ops (none, skip, both convolutions, the pooling) and its residual blocks
NB201_ALL_OPS = '|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|'
ARCHS = {'DARTS_V1': 'DARTS_V1', 'DARTS_V2': 'DARTS_V2', 'all_ops': ALL_OPS, 'nas-bench-201': NB201_ALL_OPS}
BATCHES = (1, 4)


def graph_of(arch, batch):
    """The test graph of the tiny network (TINY) of ``arch`` (a name, string or arch object) in its space."""
    space = spaces.get(spaces.named_by(arch))
    arch = space.parse(arch, 'arch')
    args = darts_train.parse('train', TINY + ['--search-space', space.name, '--model-arch-name', 'DARTS_V2'
                                              if space.name == 'darts' else NB201_ALL_OPS])
    return space, arch, model_eval.build_test(space, arch, darts_train.network_of(args, CIFAR10), batch)


def trained_looking(rng):
    """Replace every parameter by a random one of a trained network's kind, drawn from ``rng`` alone
    (the same values in any test order): BN statistics and affine terms away from 0 and 1 (the
    initial ones would hide a BN exported with its inputs swapped or its statistics ignored),
    weights at LeCun scale (logits of a few units, as a trained network has)."""
    for name, v in export.inference_parameters().items():
        kind = name.rsplit('/', 1)[1]
        if kind == 'var':
            v.d = rng.uniform(0.5, 2.0, v.shape)
        elif kind == 'gamma':
            v.d = rng.uniform(0.5, 1.5, v.shape)
        elif kind in ('mean', 'beta', 'b'):
            v.d = rng.normal(0.0, 0.3, v.shape)
        else:  # convolution (out, in, k, k), depthwise (C, k, k) and affine (in, out) weights
            fan_in = v.shape[0] if 'affine' in name else np.prod(v.shape[1:])
            v.d = rng.normal(0.0, np.sqrt(1.0 / fan_in), v.shape)


def nnabla_logits(test, x):
    """Logits of the nnabla test graph ``test`` for the images ``x``."""
    test['x'].d = x
    test['logits'].forward(clear_buffer=True)
    return test['logits'].d.copy()


def onnx_logits(path, x):
    """Logits of onnxruntime for the images ``x``, through the file's own input and output names."""
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.fixture(scope='module', params=sorted(ARCHS))
def exported(request, tmp_path_factory):
    """(name, ONNX path, images and nnabla logits per batch size) of a tiny network of each arch
    with trained-looking parameters, exported as darts_train.py --export-onnx does."""
    name, arch = request.param, ARCHS[request.param]
    rng = np.random.RandomState(1)
    nn.clear_parameters()
    tests = {b: graph_of(arch, b)[2] for b in BATCHES}
    trained_looking(rng)
    path = tmp_path_factory.mktemp('onnx') / '{}.onnx'.format(name)
    space, arch, _ = graph_of(arch, 1)
    darts_train.export(space, arch, darts_train.network_of(darts_train.parse('train', TINY + [
        '--model-arch-name', 'DARTS_V2']), CIFAR10), str(path), save=darts_train.save_onnx)
    images = {b: rng.normal(0.0, 1.0, (b, 3, 32, 32)).astype(np.float32) for b in BATCHES}
    expected = {b: nnabla_logits(tests[b], images[b]) for b in BATCHES}
    nn.clear_parameters()
    return name, path, images, expected


@pytest.mark.parametrize('batch', BATCHES)
def test_onnxruntime_gives_nnablas_logits(exported, batch):
    name, path, images, expected = exported
    got = onnx_logits(path, images[batch])
    print('{} batch {}: max abs logit difference {:.2e} (logits up to {:.1f})'.format(
        name, batch, np.abs(got - expected[batch]).max(), np.abs(expected[batch]).max()))
    assert got.shape == (batch, 10)
    np.testing.assert_allclose(got, expected[batch], rtol=0, atol=1e-5)


def test_the_file_is_opset_11_with_a_symbolic_batch(exported):
    model = onnx.load(str(exported[1]))
    assert [o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')] == [11]
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == export.BATCH and not dims[0].HasField('dim_value'), value
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 32, 32]


def test_the_converters_default_table_gets_the_average_pooling_wrong(tmp_path):
    """The trap: nnabla-converter's default table (opset 11) pads the average pooling by edge
    replication instead of leaving the padding out of the mean; ONNX_TABLE does not."""
    rng = np.random.RandomState(2)
    nn.clear_parameters()
    test = graph_of(ALL_OPS, 4)[2]
    trained_looking(rng)
    export.save_nnp(str(tmp_path / 'm.nnp'), test['x'], test['logits'])
    x = rng.normal(0.0, 1.0, (4, 3, 32, 32)).astype(np.float32)
    expected = nnabla_logits(test, x)
    nn.clear_parameters()
    errors = {}
    for table in ('11', export.ONNX_TABLE):
        export.nnp_to_onnx(str(tmp_path / 'm.nnp'), str(tmp_path / '{}.onnx'.format(table)), table)
        errors[table] = np.abs(onnx_logits(tmp_path / '{}.onnx'.format(table), x) - expected).max()
    print('max abs logit difference, all_ops at batch 4: {}'.format(errors))
    assert errors['11'] > 1e-3 and errors[export.ONNX_TABLE] < 1e-5, errors


def train(*argv):
    return subprocess.run([sys.executable, 'darts_train.py', *TINY, '--model-arch-name', 'DARTS_V2',
                           *[str(a) for a in argv]], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_export_onnx_on_the_command_line(tmp_path):
    """A tiny retraining leaves model.onnx beside model.nnp; --export-onnx writes the same network
    from its params.h5 and refuses a bad path in one line before any work."""
    archive = write_archive(tmp_path / 'c.tar.gz', 8, 10)
    proc = train('--dataset-path', archive, '-b', 8, '-e', 1, '-m', tmp_path / 'run')
    assert proc.returncode == 0, proc.stderr
    assert 'ONNX network written to' in proc.stdout
    proc = train('--export-onnx', tmp_path / 'again.onnx', '--model-load-path', tmp_path / 'run' / 'params.h5')
    assert proc.returncode == 0, proc.stderr
    x = np.random.RandomState(3).normal(0.0, 1.0, (3, 3, 32, 32)).astype(np.float32)
    nn.clear_parameters()
    test = graph_of('DARTS_V2', 3)[2]
    darts_train.load_into_network(str(tmp_path / 'run' / 'params.h5'))
    expected = nnabla_logits(test, x)
    nn.clear_parameters()
    for path in (tmp_path / 'run' / 'model.onnx', tmp_path / 'again.onnx'):
        np.testing.assert_allclose(onnx_logits(path, x), expected, rtol=0, atol=1e-5)
    proc = train('--export-onnx', tmp_path, '--model-load-path', tmp_path / 'run' / 'params.h5')
    lines = [line for line in proc.stderr.splitlines() if '[nnabla]' not in line]
    assert proc.returncode == 2 and lines == ['error: --export-onnx {} exists and is not a file'.format(tmp_path)], \
        proc.stderr


def test_without_the_extras_a_note_or_a_one_line_refusal(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(darts_train, 'onnx_export_available', lambda: False)
    darts_train.onnx_beside(str(tmp_path / 'model.nnp'))
    assert 'model.onnx not written: ONNX export needs pip install' in capsys.readouterr().out
    assert not (tmp_path / 'model.onnx').exists()
    with pytest.raises(UserError, match='--export-onnx needs the export dependencies'):
        darts_train.main([*TINY, '--model-arch-name', 'DARTS_V2', '--export-onnx', str(tmp_path / 'm.onnx'),
                          '--model-load-path', str(tmp_path / 'params.h5')])


def test_training_and_search_do_not_import_the_extras():
    code = ('import sys, darts_train, darts_search; '
            'print([m for m in sys.modules if m.split(".")[0] in ("onnx", "onnxruntime") or "converter.onnx" in m])')
    proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == '[]', proc.stdout + proc.stderr
