"""The recurrent cell's architecture (spaces/darts_rnn/arch.py): the paper's derivation on hand-made
alphas, its two cells, the JSON format read back, and the refusals of what is not a recurrent arch."""
import json

import numpy as np
import pytest

from errors import UserError
from spaces.darts_rnn import arch


def test_the_rows_are_the_paper_s_36_edges_node_by_node():
    assert len(arch.EDGES) == 36 and arch.EDGES[:4] == [(0, 1), (0, 2), (1, 2), (0, 3)] and arch.EDGES[-1] == (7, 8)


def test_the_derivation_takes_each_node_s_strongest_edge_and_op_that_are_not_none():
    alpha = np.zeros((36, 5))
    expected = []
    for node in range(1, 9):
        rows = [r for r, (_, j) in enumerate(arch.EDGES) if j == node]
        source, op = (3 * node + 1) % node, 1 + node % 4  # a chosen input and op per node
        alpha[rows[source], op] = 2.0
        if node > 1:
            alpha[rows[(source + 1) % node], 0] = 5.0  # a stronger none on another edge: never chosen
        expected.append((arch.OPS[op], source))
    assert arch.derive(alpha) == tuple(expected)
    tie = np.zeros((36, 5))
    assert arch.derive(tie) == tuple(('tanh', 0) for _ in range(8))  # ties: the first edge, the first op


def test_the_paper_s_cells_are_built_in_and_every_arch_reads_back():
    v2 = arch.parse('DARTS_V2', 'test')
    assert v2[0] == ('sigmoid', 0) and v2[5] == ('sigmoid', 5) and len(v2) == 8
    for name in arch.PAPER_ARCHS:
        document = json.loads(json.dumps(arch.document(arch.parse(name, 'test'))))
        assert arch.parse(document, 'arch.json') == arch.PAPER_ARCHS[name]


@pytest.mark.parametrize('value, fragment', [
    ('DARTS_V3', "no recurrent arch is named 'DARTS_V3'"),
    ({'arch_normal': {}}, 'not a recurrent arch'),
    ({'search_space': 'darts-rnn', 'recurrent': [['relu', 0]] * 7},
     'a recurrent arch is 8 nodes of [op, input], got a list of 7'),
    ({'search_space': 'darts-rnn', 'recurrent': [['relu', 0]] * 7 + [['none', 0]]}, 'node 8 is'),
    ({'search_space': 'darts-rnn', 'recurrent': [['relu', 1]] + [['relu', 0]] * 7}, 'node 1 is'),
    ({'search_space': 'darts-rnn', 'recurrent': [['relu', 0]] * 7 + [['relu', True]]}, 'input a node in 0..7'),
])
def test_what_is_not_a_recurrent_arch_is_one_line(value, fragment):
    with pytest.raises(UserError, match=fragment.replace('[', r'\[').replace(']', r'\]')):
        arch.parse(value, 'arch.json')
