"""Architectures as data: the alphas' edge order, the derivation of cells from alphas, and the
arch JSON (read, validate, describe, write).

Format (the seed's): ``{"arch_normal": {"2": [[op_id, input_node], [op_id, input_node]], ...},
"arch_reduction": {...}}``, one key per intermediate node 2..num_nodes-2, each with exactly
two (op id, earlier node) pairs. ``DARTS_V1`` and ``DARTS_V2`` name the paper's cells.

    python genotype.py plot ARCH --out DIR     # DIR/normal_cell.png, DIR/reduction_cell.png
"""
import json
import os
import sys

import numpy as np

from args import Parser
from errors import UserError, run
from files import MB, check_input, write_atomic
from operations import OP_NAMES, ZERO

CELLS = ('arch_normal', 'arch_reduction')
ALPHA_NAMES = ('alpha_normal', 'alpha_reduction')  # the alphas of the normal and the reduction cell
BETA_NAMES = ('beta_normal', 'beta_reduction')  # PC-DARTS's edge-normalisation betas, one per edge
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
    return [(i, j) for j in range(2, num_nodes - 1) for i in range(j)]


def softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def derive(alpha_normal, alpha_reduction, num_nodes, betas=None):
    """The arch of the alphas (DARTS's rule): per node the two edges whose strongest non-zero op has
    the largest softmax weight, each with that op (strongest edge first). With PC-DARTS's ``betas``
    (normal, reduction), an edge's strength is that weight times its beta normalised over the
    node's incoming edges."""
    arch = {}
    for c, (cell, alpha) in enumerate(zip(CELLS, (alpha_normal, alpha_reduction))):
        w = np.delete(softmax(alpha, 1), ZERO, axis=1)
        arch[cell] = {}
        for j in range(2, num_nodes - 1):
            rows = [e for e, (i, node) in enumerate(edges(num_nodes)) if node == j]
            strength = w[rows].max(axis=1)
            if betas is not None:
                strength = strength * softmax(np.ravel(betas[c])[rows], 0)
            best = [rows[r] for r in sorted(range(len(rows)), key=lambda r: -strength[r])[:2]]
            arch[cell][str(j)] = [[int(w[e].argmax()), edges(num_nodes)[e][0]] for e in best]
    return arch


def is_int(value):
    """JSON integers only: not booleans, not floats."""
    return isinstance(value, int) and not isinstance(value, bool)


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


def load(name, num_nodes=7):
    """The validated arch of a JSON file, or of the paper's cells by name (DARTS_V1, DARTS_V2)."""
    if name in PAPER_ARCHS and not os.path.exists(name):
        arch = PAPER_ARCHS[name]
    else:
        check_input(name, 'arch file', MB)
        try:
            with open(name) as f:
                arch = json.load(f)
        except OSError as e:
            raise UserError('cannot read arch file {}: {}'.format(name, e.strerror or e))
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError('{} is not valid JSON: {}'.format(name, e))
        except RecursionError:  # json's decoder recurses once per level of nesting
            raise UserError('{} is not valid JSON: nested too deeply for an arch file'.format(name))
    validate(arch, num_nodes, name)
    return arch


def save(arch, path):
    """Write ``arch`` as JSON atomically (temporary file, then rename)."""
    normal = arch.get(CELLS[0]) if isinstance(arch, dict) else None
    validate(arch, len(normal) + 3 if isinstance(normal, dict) else 7, path)
    write_atomic(path, lambda f: f.write('{\n' + ',\n'.join(
        '  "{}": {}'.format(cell, json.dumps(arch[cell])) for cell in CELLS) + '\n}\n'))


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


def cells(arch):
    """{'normal': nodes, 'reduction': nodes}: the cells of ``arch`` by their diagram names."""
    return {cell[len('arch_'):]: nodes(arch[cell]) for cell in CELLS}


def main(argv=None):
    parser = Parser(prog='genotype.py', description='Draw the cells of an arch JSON (or DARTS_V1, DARTS_V2).')
    command = parser.add_subparsers(dest='command', required=True).add_parser('plot', help='draw the cells')
    command.add_argument('arch', help='arch JSON path, or DARTS_V1 / DARTS_V2')
    command.add_argument('--out', default='.', help='folder of normal_cell.png and reduction_cell.png')
    command.add_argument('--num-nodes', type=int, default=7, help='nodes of a cell')
    args = parser.parse_args(argv)
    import plots  # matplotlib is loaded to draw, never to read or build a network
    written, renderer = plots.draw_cells(cells(load(args.arch, args.num_nodes)), args.out)
    print('{} ({})'.format(', '.join(written), renderer))
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
