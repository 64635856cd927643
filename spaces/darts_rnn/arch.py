"""The recurrent cell's architecture: 8 nodes after the cell's first state s0, node i (1..8) reading
one earlier node s_p through one activation f,

    [c, h'] = s_p W_i,  s_i = s_p + sigmoid(c) * (f(h') - s_p),  f in tanh, relu, sigmoid, identity,

and h_t the mean of nodes 1..8. An arch is the list of the 8 nodes' (op, input) pairs, node 1's
first, as the paper's code's Genotype.recurrent; its JSON is ``{"search_space": "darts-rnn",
"recurrent": [[op, input], ...]}`` with the ops by name. The supernet's alphas are (36 x 5):
one row per edge, node by node, inputs in order (model_search.dag_edges(1, 8)), one column per op
of OPS, ``none`` first. The derivation is the paper's: for every node the incoming edge whose
strongest op that is not ``none`` is strongest, and that op.
"""
import numpy as np

from errors import UserError
from model_search import dag_edges
from spaces.space import is_int, softmax_weights

NAME = 'darts-rnn'
OPS = ('none', 'tanh', 'relu', 'sigmoid', 'identity')  # the op ids: the paper's code's PRIMITIVES
NONE = 0
NODES = 8
EDGES = dag_edges(1, NODES)  # (input, node) of the 36 rows of the alphas
PAPER_ARCHS = {  # the paper's recurrent cells (its rnn/genotypes.py): first order, second order
    'DARTS_V1': (('relu', 0), ('relu', 1), ('tanh', 2), ('relu', 3), ('relu', 4), ('identity', 1), ('relu', 5),
                 ('relu', 1)),
    'DARTS_V2': (('sigmoid', 0), ('relu', 1), ('relu', 1), ('identity', 1), ('tanh', 2), ('sigmoid', 5),
                 ('tanh', 3), ('relu', 5)),
}


def derive(alpha):
    """The arch of the (36 x 5) ``alpha``: per node, the edge of the strongest op that is not none
    (by softmax weight; the first on a tie), and that op."""
    w = softmax_weights(np.asarray(alpha, dtype=np.float64))
    w[:, NONE] = -1.0  # below every weight: never chosen
    arch = []
    for node in range(1, NODES + 1):
        rows = [r for r, (_, j) in enumerate(EDGES) if j == node]
        best = rows[int(np.argmax(w[rows].max(axis=1)))]
        arch.append((OPS[int(np.argmax(w[best]))], EDGES[best][0]))
    return tuple(arch)


def validate(value, source):
    """The arch of the JSON list ``value`` read from ``source``; UserError naming what is wrong."""
    if not isinstance(value, (list, tuple)) or len(value) != NODES:
        raise UserError('{}: a recurrent arch is {} nodes of [op, input], got {}'.format(
            source, NODES, 'a list of {}'.format(len(value)) if isinstance(value, (list, tuple)) else type(value).__name__))
    arch = []
    for node, pair in enumerate(value, 1):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and pair[0] in OPS[1:] and is_int(pair[1])
                and 0 <= pair[1] < node):
            raise UserError('{}: node {} is {!r}, expected [op, input] with op one of {} and input a node in '
                            '0..{}'.format(source, node, pair, ', '.join(OPS[1:]), node - 1))
        arch.append((pair[0], pair[1]))
    return tuple(arch)


def document(arch):
    """The arch as its JSON object."""
    return {'search_space': NAME, 'recurrent': [list(pair) for pair in arch]}


def parse(value, source):
    """The arch of a name of PAPER_ARCHS or of a JSON object of the format (UserError otherwise)."""
    if isinstance(value, str):
        if value not in PAPER_ARCHS:
            raise UserError('{}: no recurrent arch is named {!r} (built in: {})'.format(
                source, value, ', '.join(PAPER_ARCHS)))
        return PAPER_ARCHS[value]
    if not isinstance(value, dict) or 'recurrent' not in value or value.get('search_space') != NAME:
        raise UserError('{}: not a recurrent arch (a JSON object with "search_space": "{}" and "recurrent")'.format(
            source, NAME))
    return validate(value['recurrent'], source)
