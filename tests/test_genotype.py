"""Tests of genotype and of the DARTS space's arch JSON format: every refusal, the paper's cells,
save/load, describe."""
import copy
import json
import os

import pytest

import genotype
import spaces
from errors import UserError
from spaces.darts_cnn import arch as darts_arch
from helpers import one_line, train

# Op ids of the reference, written out here rather than taken from operations.OP_NAMES.
OP_ID = {'dil_conv_3x3': 0, 'dil_conv_5x5': 1, 'sep_conv_3x3': 2, 'sep_conv_5x5': 3,
         'max_pool_3x3': 4, 'avg_pool_3x3': 5, 'skip_connect': 6}


def _cell(pairs):
    """Arch-JSON cell from the paper's flat genotype list [(op name, input), ...] (two per node)."""
    return {str(2 + i // 2): [[OP_ID[op], inp] for op, inp in pairs[i:i + 2]] for i in range(0, len(pairs), 2)}


# The genotypes of the DARTS paper's code (genotypes.py), in its own notation.
V2 = {'arch_normal': _cell([('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1),
                            ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)]),
      'arch_reduction': _cell([('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1),
                               ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)])}
V1 = {'arch_normal': _cell([('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1),
                            ('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)]),
      'arch_reduction': _cell([('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0),
                               ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)])}
TWO_NODES = {'arch_normal': {'2': [[3, 0], [1, 1]], '3': [[5, 2], [6, 0]]},
             'arch_reduction': {'2': [[4, 0], [6, 1]], '3': [[0, 2], [2, 1]]}}


def darts(num_nodes=7):
    """The DARTS space with cells of ``num_nodes`` nodes."""
    return spaces.get('darts', num_nodes=num_nodes)


def _write(path, text):
    with open(str(path), 'w') as f:
        f.write(text)
    return str(path)


# ---------------------------------------------------------------- accepted archs


def test_paper_cells_by_name_are_the_papers_genotypes():
    assert genotype.load('DARTS_V2') == V2
    assert genotype.load('DARTS_V1') == V1


def test_every_op_id_and_every_earlier_input_is_accepted():
    arch = {'arch_normal': {'2': [[0, 0], [1, 1]], '3': [[2, 2], [3, 0]],
                            '4': [[4, 3], [5, 1]], '5': [[6, 4], [6, 3]]},
            'arch_reduction': {'2': [[6, 1], [6, 0]], '3': [[5, 2], [4, 1]],
                               '4': [[3, 3], [2, 0]], '5': [[1, 4], [0, 2]]}}
    darts_arch.validate(copy.deepcopy(arch))  # no exception
    assert darts_arch.validate(arch, 7, 'x') is None


# ---------------------------------------------------------------- refusals


def _set(cell, node, value, entry=None):
    def mutate(arch):
        if entry is None:
            arch[cell][node] = value
        else:
            arch[cell][node][entry] = value
        return arch
    return mutate


def _delete(*keys):
    def mutate(arch):
        target = arch
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
        return arch
    return mutate


REFUSALS = [
    ('not an object', lambda a: [a['arch_normal'], a['arch_reduction']], ['JSON object']),
    ('missing normal cell', _delete('arch_normal'), ['arch_normal', 'missing']),
    ('missing reduction cell', _delete('arch_reduction'), ['arch_reduction', 'missing']),
    ('cell not an object', lambda a: dict(a, arch_normal=[[2, 0], [2, 1]]), ['arch_normal']),
    ('extra top-level key', lambda a: dict(a, arch_extra={}), ["'arch_extra'"]),
    ('missing node', _delete('arch_normal', '3'), ['arch_normal', 'node 3', 'missing']),
    ('missing node in reduction', _delete('arch_reduction', '5'), ['arch_reduction', 'node 5', 'missing']),
    ('extra node', _set('arch_reduction', '6', [[2, 0], [2, 1]]), ['arch_reduction', "'6'", '2, 3, 4, 5']),
    ('node key not a number', _set('arch_normal', 'two', [[2, 0], [2, 1]]), ['arch_normal', "'two'"]),
    ('node not a list', _set('arch_normal', '4', {'0': [2, 0]}), ['arch_normal', 'node 4', 'two']),
    ('node null', _set('arch_normal', '4', None), ['arch_normal', 'node 4']),
    ('one pair', _set('arch_normal', '2', [[2, 0]]), ['arch_normal', 'node 2', 'exactly two']),
    ('three pairs', _set('arch_reduction', '3', [[4, 0], [4, 1], [4, 2]]),
     ['arch_reduction', 'node 3', 'exactly two']),
    ('float op', _set('arch_normal', '3', [2.0, 1], 1), ['arch_normal', 'node 3', 'entry 1', 'two integers']),
    ('float input', _set('arch_normal', '3', [2, 1.5], 0), ['arch_normal', 'node 3', 'entry 0', 'two integers']),
    ('string op', _set('arch_reduction', '4', ['2', 0], 1), ['arch_reduction', 'node 4', 'entry 1', 'integers']),
    ('boolean op', _set('arch_normal', '5', [True, 0], 0), ['arch_normal', 'node 5', 'entry 0', 'integers']),
    ('boolean input', _set('arch_normal', '5', [2, False], 1), ['arch_normal', 'node 5', 'entry 1', 'integers']),
    ('pair too short', _set('arch_normal', '2', [2], 1), ['arch_normal', 'node 2', 'entry 1']),
    ('pair too long', _set('arch_normal', '2', [2, 0, 1], 0), ['arch_normal', 'node 2', 'entry 0']),
    ('pair not a list', _set('arch_normal', '2', 2, 0), ['arch_normal', 'node 2', 'entry 0']),
    ('op id 7 (zero)', _set('arch_normal', '3', [7, 1], 1), ['arch_normal', 'node 3', 'entry 1', '7']),
    ('op id -1', _set('arch_reduction', '2', [-1, 0], 0), ['arch_reduction', 'node 2', 'entry 0', '-1']),
    ('op id 8', _set('arch_normal', '5', [8, 0], 1), ['arch_normal', 'node 5', 'entry 1', '8']),
    ('input equal to its node', _set('arch_normal', '4', [2, 4], 0),
     ['arch_normal', 'node 4', 'entry 0', 'input node 4']),
    ('input after its node', _set('arch_reduction', '3', [4, 5], 1),
     ['arch_reduction', 'node 3', 'entry 1', 'input node 5']),
    ('negative input', _set('arch_normal', '2', [2, -1], 1), ['arch_normal', 'node 2', 'entry 1', '-1']),
]


@pytest.mark.parametrize('mutate, expected', [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_validate_refuses_naming_cell_node_and_entry(mutate, expected):
    arch = mutate(copy.deepcopy(V2))
    with pytest.raises(UserError) as e:
        darts_arch.validate(arch, 7, 'my.json')
    message = str(e.value)
    assert message.startswith('my.json')
    for fragment in expected:
        assert fragment in message
    assert '\n' not in message


@pytest.mark.parametrize('mutate, expected', [r[1:] for r in REFUSALS[1:8]], ids=[r[0] for r in REFUSALS[1:8]])
def test_load_refuses_bad_files_naming_the_file(tmp_path, mutate, expected):
    path = _write(tmp_path / 'bad.json', json.dumps(mutate(copy.deepcopy(V2))))
    with pytest.raises(UserError) as e:
        genotype.load(path)
    assert path in str(e.value)
    for fragment in expected:
        assert fragment in str(e.value)


@pytest.mark.parametrize('content', ['{', '', 'arch_normal: {}', '{"arch_normal": {"2": [[2, 0], [2, 1]],}}'],
                         ids=['unclosed', 'empty', 'yaml-ish', 'trailing comma'])
def test_load_refuses_text_that_is_not_json(tmp_path, content):
    path = _write(tmp_path / 'arch.json', content)
    with pytest.raises(UserError, match='not valid JSON') as e:
        genotype.load(path)
    assert path in str(e.value)


def test_load_refuses_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / 'arch.json'
    path.write_bytes(b'\xff\xfe\x00{"a\x81')
    with pytest.raises(UserError, match='not valid JSON'):
        genotype.load(str(path))


def test_load_refuses_missing_and_unreadable_files(tmp_path):
    missing = str(tmp_path / 'nowhere' / 'arch.json')
    with pytest.raises(UserError) as e:
        genotype.load(missing)
    assert 'cannot read' in str(e.value) and missing in str(e.value) and 'does not exist' in str(e.value)
    folder = tmp_path / 'a_folder.json'
    folder.mkdir()
    with pytest.raises(UserError, match='cannot read arch file'):
        genotype.load(str(folder))


def test_a_file_named_like_a_paper_cell_is_read_as_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / 'DARTS_V2', json.dumps(V1))
    assert genotype.load('DARTS_V2') == V1


# ---------------------------------------------------------------- --num-nodes


def test_num_nodes_5_accepts_a_two_node_cell_and_refuses_darts_v2(tmp_path):
    path = _write(tmp_path / 'two.json', json.dumps(TWO_NODES))
    assert genotype.load(path, darts(5)) == TWO_NODES
    with pytest.raises(UserError) as e:
        genotype.load('DARTS_V2', darts(5))
    message = str(e.value)
    assert 'arch_normal' in message and "'4'" in message and '--num-nodes 5' in message and 'are 2, 3' in message
    with pytest.raises(UserError, match='arch_normal node 4 is missing'):
        genotype.load(path)  # the default 7 nodes wants nodes 2..5


# ---------------------------------------------------------------- save


def test_save_then_load_round_trip_leaves_no_temporary_file(tmp_path):
    for arch, nodes, name in ((V2, 7, 'v2.json'), (V1, 7, 'v1.json'), (TWO_NODES, 5, 'two.json')):
        path = str(tmp_path / 'out' / name)  # the folder does not exist yet
        genotype.save(arch, path, darts(nodes))
        assert genotype.load(path, darts(nodes)) == arch
        with open(path) as f:
            assert json.load(f) == arch  # plain JSON, readable by anything
    assert sorted(os.listdir(str(tmp_path / 'out'))) == ['two.json', 'v1.json', 'v2.json']


def test_save_replaces_an_existing_file(tmp_path):
    path = _write(tmp_path / 'arch.json', json.dumps(V1))
    genotype.save(V2, path, darts())
    assert genotype.load(path) == V2
    assert os.listdir(str(tmp_path)) == ['arch.json']


def test_save_refuses_an_invalid_arch_and_writes_nothing(tmp_path):
    bad = copy.deepcopy(V2)
    bad['arch_reduction']['4'][1] = [7, 2]
    path = tmp_path / 'arch.json'
    with pytest.raises(UserError, match='arch_reduction node 4 entry 1'):
        genotype.save(bad, str(path), darts())
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('arch, fragment', [
    ({}, 'arch_normal is missing'),
    ({'arch_reduction': V2['arch_reduction']}, 'arch_normal is missing'),
    ([V2['arch_normal'], V2['arch_reduction']], 'expected a JSON object'),
    ({'arch_normal': [[2, 0], [2, 1]], 'arch_reduction': V2['arch_reduction']}, 'arch_normal is missing or not'),
], ids=['empty', 'no normal cell', 'a list', 'normal cell a list'])
def test_save_refuses_a_malformed_arch_with_a_user_error(tmp_path, arch, fragment):
    path = str(tmp_path / 'arch.json')
    with pytest.raises(UserError) as e:  # not a KeyError or TypeError from inferring the node count
        genotype.save(arch, path, darts())
    assert fragment in str(e.value) and path in str(e.value)
    assert os.listdir(str(tmp_path)) == []


def test_save_is_atomic_the_old_file_survives_a_failed_rename(tmp_path, monkeypatch):
    path = _write(tmp_path / 'arch.json', json.dumps(V1))

    def failing_replace(src, dst):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(genotype.os, 'replace', failing_replace)
    with pytest.raises(OSError):
        genotype.save(V2, path, darts())
    with open(path) as f:
        assert json.load(f) == V1  # never truncated or half-written


# ---------------------------------------------------------------- describe


def test_describe_darts_v2():
    expected = '\n'.join([
        'normal cell:',
        '  ops at node 2: sep_conv_3x3 from node 0, sep_conv_3x3 from node 1',
        '  ops at node 3: sep_conv_3x3 from node 0, sep_conv_3x3 from node 1',
        '  ops at node 4: sep_conv_3x3 from node 1, identity from node 0',
        '  ops at node 5: identity from node 0, dil_conv_3x3 from node 2',
        'reduction cell:',
        '  ops at node 2: max_pool_3x3 from node 0, max_pool_3x3 from node 1',
        '  ops at node 3: identity from node 2, max_pool_3x3 from node 1',
        '  ops at node 4: max_pool_3x3 from node 0, identity from node 2',
        '  ops at node 5: identity from node 2, max_pool_3x3 from node 1'])
    assert darts_arch.describe(V2) == expected


def test_describe_orders_nodes_numerically_and_names_every_op():
    arch = {'arch_normal': {'3': [[5, 2], [1, 0]], '2': [[3, 1], [0, 0]]},
            'arch_reduction': {'2': [[4, 1], [6, 0]], '3': [[2, 2], [5, 1]]}}
    lines = darts_arch.describe(arch).splitlines()
    assert lines[1] == '  ops at node 2: sep_conv_5x5 from node 1, dil_conv_3x3 from node 0'
    assert lines[2] == '  ops at node 3: avg_pool_3x3 from node 2, dil_conv_5x5 from node 0'
    assert lines[4] == '  ops at node 2: max_pool_3x3 from node 1, identity from node 0'


# ---------------------------------------------------------------- through the CLI


@pytest.mark.parametrize('content, fragments', [
    ('{"arch_normal": ', ['not valid JSON']),
    (json.dumps(dict(V2, arch_normal=dict(V2['arch_normal'], **{'3': [[2, 0], [7, 1]]}))),
     ['arch_normal node 3 entry 1', 'op id 7']),
    (json.dumps(dict(V2, arch_reduction=dict(V2['arch_reduction'], **{'5': [[6, 2], [True, 1]]}))),
     ['arch_reduction node 5 entry 1', 'true']),
    (None, ['cannot read arch file', 'it does not exist']),
    ('FIFO', ['cannot read arch file', 'it is not a regular file']),
    ('LARGE', ['cannot read arch file', 'larger than such a file can be (1 MB at most)']),
], ids=['not json', 'zero op', 'boolean', 'missing file', 'named pipe', 'over 1 MB'])
def test_cli_refuses_a_bad_arch_in_one_line(tmp_path, content, fragments):
    """Each before the file is read: a named pipe without a writer would block the job for ever
    (the timeout catches that), an endless or huge file fill the memory."""
    path = str(tmp_path / 'bad.json')
    if content == 'FIFO':
        os.mkfifo(path)
    elif content == 'LARGE':
        with open(path, 'wb') as f:
            f.truncate((1 << 20) + 1)  # sparse
    elif content is not None:
        _write(path, content)
    res = train('--model-arch-name', path, '--summary-only', timeout=60)
    one_line(res, *fragments + [path])
    assert 'trainable parameters' not in res.stdout


def test_cli_num_nodes_5_takes_a_two_node_cell_and_refuses_darts_v2(tmp_path):
    path = _write(tmp_path / 'two.json', json.dumps(TWO_NODES))
    res = train('--model-arch-name', path, '--num-nodes', '5', '--summary-only', '--num-cells', '3',
                '--output-filter', '4', '-f', '0')
    assert res.returncode == 0, res.stderr
    assert '  ops at node 3: avg_pool_3x3 from node 2, identity from node 0' in res.stdout
    assert 'node 4' not in res.stdout
    assert 'trainable parameters: ' in res.stdout
    line = one_line(train('--model-arch-name', 'DARTS_V2', '--num-nodes', '5', '--summary-only'), '--num-nodes 5')
    assert line.startswith('error: DARTS_V2: arch_normal has node'), line
