"""NAS-Bench-201's architectures as data: the cell string, its parse with one-line errors, and the
derivation of a cell from the alphas (the argmax op of every edge, ``none`` included, as
NAS-Bench-201's search code derives).

The string lists nodes 1, 2 and 3, separated by '+'; node j is '|op~0|op~1|...|op~(j-1)|', the
op on its edge from each earlier node, in order:

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|

The edges, the alphas' rows, are (0->1), (0->2), (1->2), (0->3), (1->3), (2->3); their columns
are the ops of operations.NAS_BENCH_201.
"""
import numpy as np

from errors import UserError
from operations import NAS_BENCH_201
from model_search import dag_edges
from spaces.space import softmax_weights

OPS = NAS_BENCH_201.names
NODES = 4  # node 0 the cell's input, node 3 its output
EDGES = dag_edges(1, NODES - 1)
SKIP = OPS.index('skip_connect')
PARAMETER_FREE = ('skip_connect', 'avg_pool_3x3')  # the ops without weights that a collapsed search piles up


def to_string(ops):
    """The cell string of the ops of EDGES, in their order."""
    return '+'.join('|' + '|'.join('{}~{}'.format(ops[e], i) for e, (i, j) in enumerate(EDGES) if j == node) + '|'
                    for node in range(1, NODES))


def parse(text, source='cell string'):
    """The ops of EDGES, in their order, of a cell string; UserError naming what is wrong."""
    if not isinstance(text, str):
        raise UserError('{}: expected a NAS-Bench-201 cell string such as {}, got {}'.format(
            source, to_string(['none'] * len(EDGES)), type(text).__name__))
    parts = text.split('+')
    if len(parts) != NODES - 1:
        raise UserError('{}: {!r} has {} node{}; a NAS-Bench-201 cell string has {} separated by \'+\''.format(
            source, text, len(parts), '' if len(parts) == 1 else 's', NODES - 1))
    ops = []
    for node, part in enumerate(parts, 1):
        where = '{}: node {} ({!r})'.format(source, node, part)
        if not (part.startswith('|') and part.endswith('|')) or len(part) < 2:
            raise UserError('{} must start and end with \'|\''.format(where))
        entries = part[1:-1].split('|')
        if len(entries) != node:
            raise UserError('{} has {} edge{}, expected {} (one from each earlier node)'.format(
                where, len(entries), '' if len(entries) == 1 else 's', node))
        for i, entry in enumerate(entries):
            op, _, inp = entry.rpartition('~')
            if op not in OPS:
                raise UserError('{}: unknown op {!r} (the ops: {})'.format(where, op or entry, ', '.join(OPS)))
            if inp != str(i):
                raise UserError('{}: edge {} reads node {!r}, expected node {} (the inputs in order 0..{})'.format(
                    where, i, inp, i, node - 1))
            ops.append(op)
    return ops


def looks_like(text):
    """Whether ``text`` is meant as a cell string (and so is parsed as one, errors included)."""
    return isinstance(text, str) and text.startswith('|')


def derive(alpha, max_skip_connect=None):
    """The cell string of the (edges x ops) alphas: every edge's argmax op, ``none`` included. With
    ``max_skip_connect`` M, while more than M edges are skip_connect, the weakest of them (by its
    softmax weight) takes its next best op (P-DARTS's cap, on this space's derivation)."""
    w = softmax_weights(np.asarray(alpha, dtype=np.float64))
    best = w.argmax(axis=1)
    if max_skip_connect is not None:
        while np.sum(best == SKIP) > max_skip_connect:
            skips = np.flatnonzero(best == SKIP)
            weakest = skips[np.argmin(w[skips, SKIP])]
            w[weakest, SKIP] = -1.0  # below every weight: never its edge's best op again
            best[weakest] = w[weakest].argmax()
    return to_string([OPS[k] for k in best])


def nodes(text):
    """[(node, [(op, input), ...])] of a valid cell string, the ``none`` edges left out."""
    ops = parse(text)
    return [(node, [(ops[e], i) for e, (i, j) in enumerate(EDGES) if j == node and ops[e] != 'none'])
            for node in range(1, NODES)]


def describe(text):
    """The cell in words: 'node 1: nor_conv_3x3 from node 0', ..."""
    return '\n'.join('  node {}: {}'.format(node, ', '.join('{} from node {}'.format(op, i) for op, i in pairs)
                                           or 'zeros (every edge none)') for node, pairs in nodes(text))
