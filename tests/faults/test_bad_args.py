"""Bad arguments and files: every flag with an impossible value, a missing or unreadable arch
JSON, malformed JSONs of every kind (arch files, checkpoint states), --resume without a
checkpoint or with one of another architecture or --num-cells. Each: one line naming the
problem, exit code 2, no traceback, before any data is loaded.

"Before any data is loaded" is shown by --dataset-path naming a file that does not exist:
had the job read it, its error would be about the dataset, not the flag.
"""
import json
import os
import shutil

import pytest

from faults.faultlib import run_injected, tally
from helpers import SEARCH_TINY, TRAIN_TINY, cuda_installed, one_line, run_cli, snapshot

KIND = 'bad arguments and files'
TRAIN_BASE = TRAIN_TINY + ['-b', '4', '-e', '1']
SEARCH_BASE = SEARCH_TINY + ['-e', '1']


def refused(program, base, extra, fragments, tmp_path, code=2):
    """Run with ``extra`` after the base flags; one line, exit 2, nothing created, no data read."""
    monitor = tmp_path / 'm'
    argv = base + ['--dataset-path', tmp_path / 'no-data.tar.gz', '-m', monitor]
    if program == 'darts_search.py' and '--model-arch-name' not in extra:
        argv += ['--model-arch-name', tmp_path / 'arch.json']
    res = run_cli(program, argv + extra)
    line = one_line(res, *fragments, code=code)
    assert 'no-data.tar.gz' not in line  # refused before the data was looked at
    assert not os.path.exists(str(monitor)) and not os.path.exists(str(tmp_path / 'arch.json'))
    return line


# ---------------------------------------------------------------- flags

COMMON = [  # (flags, fragments of the error line), for both scripts
    (['--context', 'gpu'], ['--context', 'gpu']),
    (['--device-id', '-1'], ['--device-id']),
    (['--device-id', 'zero'], ['--device-id', 'zero']),
    (['--type-config', 'double'], ['--type-config', 'double']),
    (['--epoch', '0'], ['--epoch']),
    (['--epoch', '-3'], ['--epoch']),
    (['--epoch', '1.5'], ['--epoch', '1.5']),
    (['--epoch'], ['--epoch', 'expected one argument']),
    (['--batch-size', '0'], ['--batch-size']),
    (['--batch-size', 'many'], ['--batch-size', 'many']),
    (['--num-cells', '0'], ['--num-cells']),
    (['--num-nodes', '3'], ['--num-nodes']),
    (['--output-filter', '0'], ['--output-filter']),
    (['--output-filter', '5'], ['--output-filter']),
    (['--additional-filters-on-retrain', '-2'], ['--additional-filters-on-retrain']),
    (['-f', '3'], ['--additional-filters-on-retrain']),
    (['--model-lr', '0'], ['--model-lr']),
    (['--model-lr', 'nan'], ['--model-lr']),
    (['--model-lr', 'inf'], ['--model-lr']),
    (['--min-model-lr', '-0.1'], ['--min-model-lr']),
    (['--min-model-lr', '1'], ['--min-model-lr']),
    (['--min-model-lr', 'nan'], ['--min-model-lr']),
    (['--model-lr', 'inf', '--min-model-lr', 'inf'], ['-model-lr']),
    (['--weight-decay-model', '-1e-4'], ['--weight-decay-model']),
    (['--weight-decay-model', 'nan'], ['--weight-decay-model']),
    (['--weight-decay-model', 'inf'], ['--weight-decay-model']),
    (['--grad-clip-value-model', '0'], ['--grad-clip-value-model']),
    (['--grad-clip-value-model', 'nan'], ['--grad-clip-value-model']),
    (['--model-save-interval', '-1'], ['--model-save-interval']),
    (['--seed', '-1'], ['--seed']),
    (['--seed', '2147483648'], ['--seed']),
    (['--train-images', '-1'], ['--train-images']),
    (['--test-images', '-5'], ['--test-images']),
    (['--resume', 'maybe'], ['--resume', 'maybe']),
    (['--no-such-flag', '1'], ['--no-such-flag']),
    (['--dataset', 'mnist'], ['--dataset', 'mnist']),  # the other data flags: tests/test_datasets_cli.py
    (['--dataset', 'folder', '--image-size', '100'], ['--image-size 100 must be a multiple of 32', 'ImageNet']),
]
TRAIN_ONLY = [
    (['--type-config', 'half'], ['--type-config half', '--context cudnn']),
    (['--dropout-rate', '1'], ['--dropout-rate']),
    (['--dropout-rate', '-0.1'], ['--dropout-rate']),
    (['--dropout-rate', 'nan'], ['--dropout-rate']),
    (['--auxiliary', 'maybe'], ['--auxiliary', 'maybe']),
    (['--auxiliary-weight', '-0.4'], ['--auxiliary-weight']),
    (['--auxiliary-weight', 'inf'], ['--auxiliary-weight']),
    (['--cutout', '2'], ['--cutout', '2']),
    (['--cutout-length', '0'], ['--cutout-length']),
    (['--cutout-length', '33'], ['--cutout-length', '1..32']),
    (['--summary-only', 'perhaps'], ['--summary-only', 'perhaps']),
    (['--eval-only'], ['--eval-only', '--model-load-path']),
    (['--export-nnp', 'x.nnp'], ['--export-nnp', '--model-load-path']),
    (['--export-onnx', 'x.onnx'], ['--export-onnx', '--model-load-path']),
    (['--arch-lr', '0.1'], ['--arch-lr']),  # a flag of the search only
    (['--model-arch-name', 'DARTS_V3'], ['DARTS_V3', 'cannot read']),
]
SEARCH_ONLY = [
    (['--type-config', 'half'], ['--type-config half']),
    (['--arch-lr', '0'], ['--arch-lr']),
    (['--arch-lr', 'inf'], ['--arch-lr']),
    (['--arch-lr', 'nan'], ['--arch-lr']),
    (['--weight-decay-archs', '-1'], ['--weight-decay-archs']),
    (['--weight-decay-archs', 'inf'], ['--weight-decay-archs']),
    (['--second-order', 'maybe'], ['--second-order', 'maybe']),
    (['--eta', '-0.1'], ['--eta']),
    (['--eta', 'nan'], ['--eta']),
    (['--eta', 'inf'], ['--eta']),
    (['--dropout-rate', '0.1'], ['--dropout-rate']),  # a flag of the retraining only
    (['--partial-channels', '0'], ['--partial-channels']),
    (['--partial-channels', '3'], ['--partial-channels', 'divide']),  # 4 channels
    (['--partial-channels', '4'], ['--partial-channels', '2 or more']),
    (['--edge-normalization', 'maybe'], ['--edge-normalization', 'maybe']),
    (['--arch-warmup-epochs', '-1'], ['--arch-warmup-epochs']),
    (['--hessian-every', '-1'], ['--hessian-every']),
    (['--hessian-batches', '0'], ['--hessian-batches']),
    (['--early-stop', 'True', '--hessian-every', '0'], ['--early-stop', '--hessian-every']),
    (['--max-skip-connect', '-1'], ['--max-skip-connect']),
]
if not cuda_installed():
    COMMON.append((['--context', 'cudnn'], ['--context cpu', 'nnabla-ext-cuda120']))

TRAIN_FLAGS = [(f, frag) for f, frag in COMMON + TRAIN_ONLY]
SEARCH_COMMON = (['--context', 'gpu'], ['--epoch', '0'], ['--num-nodes', '3'], ['--output-filter', '5'],
                 ['--model-lr', 'inf'], ['--seed', '-1'], ['--resume', 'maybe'], ['--dataset', 'folder', '--image-size',
                                                                                '100'])  # parsed by the same code
SEARCH_FLAGS = [(f, frag) for f, frag in COMMON if f in SEARCH_COMMON] + SEARCH_ONLY


@pytest.mark.parametrize('extra, fragments', TRAIN_FLAGS, ids=[' '.join(f) for f, _ in TRAIN_FLAGS])
def test_darts_train_refuses_an_impossible_flag(extra, fragments, tmp_path):
    with tally(KIND):
        refused('darts_train.py', TRAIN_BASE, extra, fragments, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize('extra, fragments', SEARCH_FLAGS, ids=[' '.join(f) for f, _ in SEARCH_FLAGS])
def test_darts_search_refuses_an_impossible_flag(extra, fragments, tmp_path):
    with tally(KIND):
        refused('darts_search.py', SEARCH_BASE, extra, fragments, tmp_path)


@pytest.mark.slow
def test_paths_that_cannot_be_used(tmp_path, archive):
    """Folders that are files, a search arch JSON that exists, files to evaluate or plot that
    are not there or not parameters, an .nnp under a file."""
    afile = tmp_path / 'a-file'
    afile.write_text('not a folder')
    params = tmp_path / 'params.h5'
    params.write_bytes(b'not hdf5 at all')
    cases = [
        ('darts_train.py', TRAIN_BASE, ['-m', afile], [str(afile), 'not a folder']),
        ('darts_train.py', TRAIN_BASE, ['-o', afile], [str(afile), 'not a folder']),
        ('darts_search.py', SEARCH_BASE, ['-o', afile], [str(afile), 'not a folder']),
        ('darts_search.py', SEARCH_BASE, ['--model-arch-name', afile], [str(afile), 'already exists']),
        ('darts_train.py', TRAIN_BASE, ['--eval-only', '--model-load-path', tmp_path / 'none.h5'],
         ['none.h5']),
        ('darts_train.py', TRAIN_BASE, ['--eval-only', '--model-load-path', params], ['cannot load parameters']),
        ('darts_train.py', TRAIN_BASE, ['--eval-only', '--model-load-path', archive], ['does not match']),
        ('darts_train.py', TRAIN_BASE, ['--export-nnp', afile / 'no' / 'm.nnp', '--model-load-path', params],
         ['--export-nnp', '{} is not a folder'.format(afile)]),
        ('darts_train.py', TRAIN_BASE, ['--export-onnx', afile / 'm.onnx', '--model-load-path', params],
         ['--export-onnx', str(afile), 'not a folder']),
        ('darts_train.py', TRAIN_BASE, ['--plot', tmp_path / 'nothing'], ['nothing', 'Test-error']),
    ]
    for program, base, extra, fragments in cases:
        with tally(KIND):
            refused(program, base, [str(e) for e in extra], fragments, tmp_path)


# ---------------------------------------------------------------- arch JSON files

BAD_ARCHS = [  # (file content: str, bytes, or a JSON value; fragments)
    ('', ['not valid JSON']),
    ('{"arch_normal": {"2": [[2, 0], [2, 1]]', ['not valid JSON']),
    ('{"arch_normal": {}, "arch_reduction": {}} trailing', ['not valid JSON']),
    (b'\xff\xfe\x00{\x00}', ['arch.json']),
    (b'\xef\xbb\xbf{"arch_normal": {}}', ['arch.json']),
    ('[' * 100000 + ']' * 100000, ['not valid JSON']),
    ([], ['expected a JSON object']),
    (42, ['expected a JSON object']),
    (None, ['expected a JSON object']),
    ({}, ['arch_normal is missing']),
    ({'arch_normal': 'V2', 'arch_reduction': {}}, ['arch_normal is missing or not an object']),
    ('VALID+{"arch_extra": {}}', ['unknown key', 'arch_extra']),
    ('VALID-arch_reduction', ['arch_reduction is missing']),
    ('VALID.arch_normal.6=[[2,0],[2,1]]', ["node '6'"]),
    ('VALID.arch_normal.1=[[2,0],[2,1]]', ["node '1'"]),
    ('VALID.arch_normal.5=DELETE', ['arch_normal node 5 is missing']),
    ('VALID.arch_normal.2={"0": 2}', ['node 2', 'exactly two']),
    ('VALID.arch_normal.2=null', ['node 2 is missing']),
    ('VALID.arch_normal.2=[[2,0]]', ['node 2', 'exactly two']),
    ('VALID.arch_normal.2=[[2,0],[2,1],[2,1]]', ['node 2', 'exactly two']),
    ('VALID.arch_normal.3=[2,[2,1]]', ['node 3 entry 0', 'two integers']),
    ('VALID.arch_normal.3=[[2],[2,1]]', ['node 3 entry 0', 'two integers']),
    ('VALID.arch_normal.3=[[2.0,0],[2,1]]', ['node 3 entry 0', 'two integers']),
    ('VALID.arch_normal.3=[[true,0],[2,1]]', ['node 3 entry 0', 'two integers']),
    ('VALID.arch_normal.3=[["2",0],[2,1]]', ['node 3 entry 0', 'two integers']),
    ('VALID.arch_normal.3=[[NaN,0],[2,1]]', ['node 3 entry 0', 'two integers']),
    ('VALID.arch_reduction.4=[[7,0],[2,1]]', ['arch_reduction node 4 entry 0', 'op id 7']),
    ('VALID.arch_reduction.4=[[2,0],[8,1]]', ['entry 1', 'op id 8']),
    ('VALID.arch_normal.3=[[2,3],[2,1]]', ['input node 3']),
    ('VALID.arch_normal.3=[[2,5],[2,1]]', ['input node 5']),
    ('VALID.arch_normal.3=[[2,99999999999999999999],[2,1]]', ['input node 99999999999999999999']),
]


def arch_file(path, content):
    """Write one malformed arch JSON: text, bytes, a JSON value, or an edit of DARTS_V2 (VALID...)."""
    from spaces.darts_cnn.arch import PAPER_ARCHS
    if isinstance(content, str) and content.startswith('VALID'):
        arch = json.loads(json.dumps(PAPER_ARCHS['DARTS_V2']))
        edit = content[len('VALID'):]
        if edit.startswith('+'):
            arch.update(json.loads(edit[1:]))
        elif edit.startswith('-'):
            del arch[edit[1:]]
        elif edit:
            where, value = edit[1:].split('=', 1)
            cell, node = where.split('.')
            if value == 'DELETE':
                del arch[cell][node]
            else:
                arch[cell][node] = json.loads(value)
        content = json.dumps(arch)
    elif not isinstance(content, (str, bytes)):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


@pytest.mark.slow
@pytest.mark.parametrize('content, fragments', BAD_ARCHS, ids=[repr(c)[:40] for c, _ in BAD_ARCHS])
def test_a_malformed_arch_json_is_refused(content, fragments, tmp_path):
    path = arch_file(tmp_path / 'arch.json', content)
    base = [a for a in TRAIN_BASE]
    base[base.index('--model-arch-name') + 1] = str(path)
    with tally(KIND):
        refused('darts_train.py', base, [], fragments + [str(path)], tmp_path / 'run')


@pytest.mark.slow
def test_a_missing_or_unreadable_arch_json_is_refused(tmp_path):
    base = [a for a in TRAIN_BASE]
    i = base.index('--model-arch-name') + 1
    good = arch_file(tmp_path / 'good.json', 'VALID')
    for target, fragments in ((tmp_path / 'missing.json', ['cannot read', 'it does not exist']),
                              (tmp_path, ['cannot read', 'it is not a regular file'])):
        base[i] = str(target)
        with tally(KIND):
            refused('darts_train.py', base, [], fragments + [str(target)], tmp_path / 'run')
    base[i] = str(good)
    with tally(KIND):  # unreadable: another user's file (simulated, as root reads everything)
        monitor = tmp_path / 'run' / 'm'
        res, _ = run_injected('train', base + ['--dataset-path', tmp_path / 'no-data.tar.gz', '-m', monitor],
                              deny_read=str(good), log_dir=tmp_path)
        one_line(res, 'cannot read', 'Permission denied', str(good), code=2)
        assert not os.path.exists(str(monitor))


# ---------------------------------------------------------------- --resume


@pytest.fixture
def finished(reference, tmp_path):
    """finished(name) -> a copy of the uninterrupted run of a configuration, with its checkpoints."""
    def copy(name):
        folder = tmp_path / ('copy-' + name)
        shutil.copytree(str(reference(name)[2]), str(folder))
        return folder
    return copy


RESUMES = [  # (configuration whose checkpoint is resumed, the flags of the resuming run, fragments)
    ('train', TRAIN_BASE[:3] + ['DARTS_V1'] + TRAIN_BASE[4:], ['--resume', 'arch']),
    ('train', TRAIN_BASE[:5] + ['2'] + TRAIN_BASE[6:], ['--resume', 'num_cells', '3', '2']),
    ('train', TRAIN_BASE[:9] + ['2'] + TRAIN_BASE[10:], ['--resume', 'additional_filters_on_retrain', '0', '2']),
    ('train', TRAIN_BASE + ['--auxiliary', 'False'], ['--resume', 'auxiliary']),
    ('train', TRAIN_BASE[:11] + ['8'] + TRAIN_BASE[12:], ['--resume', 'batch_size']),
    ('train', TRAIN_BASE + ['--seed', '1'], ['--resume', 'seed']),
    ('search1', SEARCH_BASE[:3] + ['4'] + SEARCH_BASE[4:], ['--resume', 'num_cells', '3', '4']),
    ('search1', SEARCH_BASE[:9] + ['6'] + SEARCH_BASE[10:], ['--resume', 'num_nodes', '5', '6']),
    ('search1', SEARCH_BASE + ['--second-order', 'True'], ['--resume', 'second_order']),
    ('search1', SEARCH_BASE + ['--train-images', '20'], ['--resume', 'train_images']),
    ('search1', SEARCH_BASE + ['--arch-lr', '0.1'], ['--resume', 'arch_lr']),
    ('search1', SEARCH_BASE + ['--hessian-every', '2'], ['--resume', 'hessian_every', '1', '2']),
    ('train', SEARCH_BASE, ['--resume', 'job', '"train"', '"search"']),  # a retraining's checkpoint to the search
    ('search1', TRAIN_BASE, ['--resume', 'job', '"search"', '"train"']),  # and the other way round
]


@pytest.mark.slow
@pytest.mark.parametrize('made_by, flags, fragments', RESUMES,
                         ids=['{}:{}'.format(m, ' '.join(f)) for m, f, _ in RESUMES])
def test_resume_from_a_checkpoint_of_another_network_is_refused(made_by, flags, fragments, finished, tmp_path):
    folder = finished(made_by)
    before = snapshot(folder)
    program = 'darts_search.py' if flags is SEARCH_BASE or '--num-nodes' in flags else 'darts_train.py'
    argv = flags + ['--dataset-path', tmp_path / 'no-data.tar.gz', '-m', folder, '--resume']
    if program == 'darts_search.py':
        argv += ['--model-arch-name', folder / 'arch.json']
    with tally(KIND):
        res = run_cli(program, argv)
        one_line(res, *fragments + [str(folder)], code=2)
        assert snapshot(folder) == before


@pytest.mark.slow
@pytest.mark.parametrize('program, base', [('darts_train.py', TRAIN_BASE), ('darts_search.py', SEARCH_BASE)])
def test_resume_without_a_checkpoint_is_refused(program, base, tmp_path):
    half = tmp_path / 'only-a-half-written-checkpoint'
    (half / '.checkpoint_tmp').mkdir(parents=True)
    (half / '.checkpoint_tmp' / 'params.h5').write_bytes(b'\x89HDF')
    for folder in (tmp_path / 'nothing', half):
        argv = base + ['--dataset-path', tmp_path / 'no-data.tar.gz', '-m', folder, '--resume']
        if program == 'darts_search.py':
            argv += ['--model-arch-name', folder / 'arch.json']
        with tally(KIND):
            one_line(run_cli(program, argv), '--resume', 'no checkpoint', str(folder), code=2)
            assert not list(folder.glob('*.series.txt'))


BAD_STATES = [  # the newest checkpoint's state.json, damaged
    ('', ['state.json']),
    ('{"iteration": 20, "config": {', ['state.json']),
    ('[1, 2, 3]', ['state.json']),
    ('{"iteration": 20}', ['state.json']),
    ('{"iteration": "twenty", "epochs_done": 2, "config": {}}', ['state.json']),
    (b'\x00\x01\x02binary', ['state.json']),
]


@pytest.mark.slow
@pytest.mark.parametrize('content, fragments', BAD_STATES, ids=[repr(c)[:30] for c, _ in BAD_STATES])
def test_resume_from_a_checkpoint_with_a_damaged_state_is_refused(content, fragments, finished, tmp_path):
    folder = finished('train')
    newest = sorted(folder.glob('checkpoint_*'))[-1]
    (newest / 'state.json').write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(folder)
    with tally(KIND):
        res = run_cli('darts_train.py', TRAIN_BASE + ['--dataset-path', tmp_path / 'no-data.tar.gz', '-m', folder,
                                                      '--resume'])
        one_line(res, *fragments + [str(newest)], code=2)
        assert snapshot(folder) == before
