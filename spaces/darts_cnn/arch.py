"""The DARTS space's architectures as data: the alphas' edge order, the derivation of cells from
alphas (DARTS's rule, with PC-DARTS's betas and P-DARTS's skip cap), and the seed's arch JSON
(validate, write, describe).

Format: ``{"arch_normal": {"2": [[op_id, input_node], [op_id, input_node]], ...}, "arch_reduction":
{...}}``, one key per intermediate node 2..num_nodes-2, each with exactly two (op id, earlier node)
pairs. ``DARTS_V1`` and ``DARTS_V2`` name the paper's cells.
"""
import json

import numpy as np

from errors import UserError
from operations import IDENTITY, OP_NAMES, POOLS, ZERO
from model_search import dag_edges, incoming
from spaces.space import is_int, normalised_betas, softmax_weights

CELLS = ('arch_normal', 'arch_reduction')
ALPHA_NAMES = ('alpha_normal', 'alpha_reduction')  # the alphas of the normal and the reduction cell
BETA_NAMES = ('beta_normal', 'beta_reduction')  # PC-DARTS's edge-normalisation betas, one per edge
PARAMETER_FREE = (IDENTITY,) + POOLS  # the ops a collapsed search piles up
PAPER_ARCHS = {
    'DARTS_V2': {'arch_normal': {'2': [[2, 0], [2, 1]], '3': [[2, 0], [2, 1]],
                                 '4': [[2, 1], [6, 0]], '5': [[6, 0], [0, 2]]},
                 'arch_reduction': {'2': [[4, 0], [4, 1]], '3': [[6, 2], [4, 1]],
                                    '4': [[4, 0], [6, 2]], '5': [[6, 2], [4, 1]]}},
    'DARTS_V1': {'arch_normal': {'2': [[2, 1], [2, 0]], '3': [[6, 0], [2, 1]],
                                 '4': [[6, 0], [2, 1]], '5': [[2, 0], [6, 2]]},
                 'arch_reduction': {'2': [[4, 0], [4, 1]], '3': [[6, 2], [4, 0]],
                                    '4': [[4, 0], [6, 2]], '5': [[6, 2], [5, 0]]}},
}


def edges(num_nodes):
    """(input, node) of every edge in the alphas' row order: 0->2, 1->2, 0->3, 1->3, 2->3, 0->4, ..."""
    return dag_edges(2, num_nodes - 2)


def pick_edges(w, num_nodes, edge_weights=None):
    """Per node the two edges whose strongest op in ``w`` (edges x non-zero ops) weighs most (times
    the edge's weight with PC-DARTS's ``edge_weights``), each with that op, strongest edge first."""
    cell, edge_list = {}, edges(num_nodes)
    for j in range(2, num_nodes - 1):
        rows = incoming(edge_list, j)
        best = sorted(rows, key=lambda e: -w[e].max() * (1 if edge_weights is None else edge_weights[e]))[:2]
        cell[str(j)] = [[int(w[e].argmax()), edge_list[e][0]] for e in best]
    return cell


def identity_edges(cell, num_nodes):
    """The alpha rows (edge indices) of the identity ops of a derived cell."""
    rows = {pair: e for e, pair in enumerate(edges(num_nodes))}
    return [rows[(inp, int(node))] for node, pairs in cell.items() for op, inp in pairs if op == IDENTITY]


def capped_skips(w, num_nodes, max_skip, edge_weights=None):
    """P-DARTS's cap on skip connections: while the derived cell has more than ``max_skip``
    identity ops, the weakest of them (by its softmax weight) is struck out of its edge, which then
    offers its next best non-zero, non-identity op, and the edges are ranked again."""
    w = w.copy()
    cell = pick_edges(w, num_nodes, edge_weights)
    while len(identity_edges(cell, num_nodes)) > max_skip:
        weakest = min(identity_edges(cell, num_nodes), key=lambda e: w[e, IDENTITY])
        w[weakest, IDENTITY] = -1.0  # below every weight: never the edge's strongest op again
        cell = pick_edges(w, num_nodes, edge_weights)
    return cell


def derive(alpha_normal, alpha_reduction, num_nodes, max_skip_connect=None, betas=None):
    """The arch of the alphas (DARTS's rule): per node the two edges whose strongest non-zero op has
    the largest softmax weight, each with that op (strongest edge first). With ``max_skip_connect``
    M, the normal cell keeps at most M identity ops (P-DARTS, ``capped_skips``). With PC-DARTS's
    ``betas`` (normal, reduction), an edge's strength is that weight times its normalised beta."""
    arch = {}
    for c, (cell, alpha) in enumerate(zip(CELLS, (alpha_normal, alpha_reduction))):
        w = np.delete(softmax_weights(alpha), ZERO, axis=1)
        edge_weights = None if betas is None else normalised_betas(betas[c], edges(num_nodes))
        if cell == CELLS[0] and max_skip_connect is not None:
            arch[cell] = capped_skips(w, num_nodes, max_skip_connect, edge_weights)
        else:
            arch[cell] = pick_edges(w, num_nodes, edge_weights)
    return arch


def derive_named(arrays, num_nodes, max_skip_connect=None):
    """The arch of {name: array} alphas, as the search derives it: with the betas where they are."""
    betas = [arrays[name] for name in BETA_NAMES] if BETA_NAMES[0] in arrays else None
    return derive(*[arrays[name] for name in ALPHA_NAMES], num_nodes, max_skip_connect, betas)


def parameter_free(arch):
    """{cell: number of parameter-free ops (identity, max and average pooling) among its edges}."""
    return {cell: sum(op in PARAMETER_FREE for pairs in arch[cell].values() for op, _ in pairs) for cell in CELLS}


def validate(arch, num_nodes=7, source='arch'):
    """Raise UserError naming the cell, node and entry of the first thing wrong with ``arch``."""
    if not isinstance(arch, dict):
        raise UserError('{}: expected a JSON object with {}'.format(source, ' and '.join(CELLS)))
    extra = sorted(set(arch) - set(CELLS))
    if extra:
        raise UserError('{}: unknown key {!r} (expected {})'.format(source, extra[0], ' and '.join(CELLS)))
    expected = [str(n) for n in range(2, num_nodes - 1)]
    for cell in CELLS:
        nodes = arch.get(cell)
        if not isinstance(nodes, dict):
            raise UserError('{}: {} is missing or not an object'.format(source, cell))
        for key in nodes:
            if key not in expected:
                raise UserError('{}: {} has node {!r}, but with --num-nodes {} the nodes are {}'.format(
                    source, cell, key, num_nodes, ', '.join(expected)))
        for node in expected:
            where = '{}: {} node {}'.format(source, cell, node)
            pairs = nodes.get(node)
            if pairs is None:
                raise UserError('{} is missing'.format(where))
            if not isinstance(pairs, list) or len(pairs) != 2:
                raise UserError('{}: expected exactly two [op_id, input_node] pairs'.format(where))
            for k, pair in enumerate(pairs):
                check_pair(pair, int(node), '{} entry {}'.format(where, k))


def check_pair(pair, node, where):
    """One [op_id, input_node] entry: a non-zero op id and an earlier node."""
    if not isinstance(pair, list) or len(pair) != 2 or not all(is_int(v) for v in pair):
        raise UserError('{}: expected [op_id, input_node] as two integers, got {}'.format(
            where, json.dumps(pair)))
    op, inp = pair
    if not 0 <= op < ZERO:
        raise UserError('{}: op id {} is not in 0-{}'.format(where, op, ZERO - 1))
    if not 0 <= inp < node:
        raise UserError('{}: input node {} is not an earlier node (0-{})'.format(where, inp, node - 1))


def node_count(arch):
    """The --num-nodes of a validated-looking arch (its intermediate nodes, two inputs, the output)."""
    normal = arch.get(CELLS[0]) if isinstance(arch, dict) else None
    return len(normal) + 3 if isinstance(normal, dict) else 7


def document(arch):
    """The arch file's text: one line per cell, as the seed writes it."""
    return '{\n' + ',\n'.join('  "{}": {}'.format(cell, json.dumps(arch[cell])) for cell in CELLS) + '\n}\n'


def nodes(cell):
    """The (node, [(op_id, input), (op_id, input)]) pairs of one cell, by node number."""
    return sorted((int(node), [tuple(p) for p in pairs]) for node, pairs in cell.items())


def describe(arch):
    """The cells as the seed prints them: 'ops at node 2: identity from node 0, ...'."""
    lines = []
    for cell in CELLS:
        lines.append('{} cell:'.format(cell[len('arch_'):]))
        for node, pairs in nodes(arch[cell]):
            lines.append('  ops at node {}: {}'.format(node, ', '.join(
                '{} from node {}'.format(OP_NAMES[op], inp) for op, inp in pairs)))
    return '\n'.join(lines)


def cell_weights(alphas):
    """{cell name ('normal', 'reduction'): the weight of every op of every edge in the supernet,
    edges x ops} of ``alphas``, a mapping that holds the ALPHA_NAMES: their softmax, times each
    edge's normalised beta where the mapping holds the BETA_NAMES too (an edge-normalised search
    weighs its edges so); other keys are ignored."""
    weights = {}
    for alpha, beta in zip(ALPHA_NAMES, BETA_NAMES):
        w = softmax_weights(np.asarray(alphas[alpha]))
        if beta in alphas:
            w = w * normalised_betas(alphas[beta], edges(nodes_of_rows(len(w))))[:, None]
        weights[alpha[len('alpha_'):]] = w
    return weights


def nodes_of_rows(rows):
    """The --num-nodes whose cells have ``rows`` edges."""
    for n in range(4, 64):
        if len(edges(n)) == rows:
            return n
    raise UserError('no cell has {} edges'.format(rows))


def check_alphas(arrays, num_nodes, source):
    """Raise UserError unless ``arrays`` ({name: array} of ALPHA_NAMES and maybe BETA_NAMES) are
    finite alphas (edges x ops) and betas (edges x 1) of ``num_nodes``-node cells."""
    for name, a in arrays.items():
        shape = (len(edges(num_nodes)), len(OP_NAMES) if name in ALPHA_NAMES else 1)
        if a.shape != shape or not np.isfinite(a).all():
            raise UserError('{}: {} must be {} finite numbers (edges x {} of --num-nodes {}), got shape {}'.format(
                source, name, 'x'.join(map(str, shape)), 'ops' if name in ALPHA_NAMES else '1', num_nodes, a.shape))
