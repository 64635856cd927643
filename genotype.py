"""Architectures as data: the alphas' edge order, the derivation of cells from alphas, and the
arch JSON (read, validate, describe, write).

Format (the seed's): ``{"arch_normal": {"2": [[op_id, input_node], [op_id, input_node]], ...},
"arch_reduction": {...}}``, one key per intermediate node 2..num_nodes-2, each with exactly
two (op id, earlier node) pairs. ``DARTS_V1`` and ``DARTS_V2`` name the paper's cells.

    python genotype.py plot ARCH --out DIR     # DIR/normal_cell.png, DIR/reduction_cell.png
    python genotype.py derive ALPHAS_JSON --out ARCH_JSON [--max-skip-connect M] [--num-nodes N]
    python genotype.py evolution MONITOR_PATH --out PNG   # the softmax weights against the epoch
"""
import json
import os
import sys

import numpy as np

from errors import Parser, UserError, run
from files import MB, check_input, check_output, write_atomic
from operations import IDENTITY, OP_NAMES, POOLS, ZERO

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
    return [(i, j) for j in range(2, num_nodes - 1) for i in range(j)]


def incoming(num_nodes, j):
    """The alpha rows of the edges into intermediate node ``j``."""
    return [e for e, (_, node) in enumerate(edges(num_nodes)) if node == j]


def softmax_weights(alpha):
    """The softmax of each edge's row of alphas: the weights of the ops in the mixed op."""
    w = np.exp(alpha - alpha.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True)


def normalised_betas(beta, num_nodes):
    """PC-DARTS's edge weights: each edge's beta, softmax-normalised over the edges into its node."""
    beta, weights = np.ravel(beta), np.zeros(len(edges(num_nodes)))
    for j in range(2, num_nodes - 1):
        rows = incoming(num_nodes, j)
        weights[rows] = softmax_weights(beta[rows][None])[0]
    return weights


def pick_edges(w, num_nodes, edge_weights=None):
    """Per node the two edges whose strongest op in ``w`` (edges x non-zero ops) weighs most (times
    the edge's weight with PC-DARTS's ``edge_weights``), each with that op, strongest edge first."""
    cell = {}
    for j in range(2, num_nodes - 1):
        rows = incoming(num_nodes, j)
        best = sorted(rows, key=lambda e: -w[e].max() * (1 if edge_weights is None else edge_weights[e]))[:2]
        cell[str(j)] = [[int(w[e].argmax()), edges(num_nodes)[e][0]] for e in best]
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
        edge_weights = None if betas is None else normalised_betas(betas[c], num_nodes)
        if cell == CELLS[0] and max_skip_connect is not None:
            arch[cell] = capped_skips(w, num_nodes, max_skip_connect, edge_weights)
        else:
            arch[cell] = pick_edges(w, num_nodes, edge_weights)
    return arch


def skip_cap_rule(max_skip_connect):
    """(holds, message) of --max-skip-connect, which the search and ``genotype.py derive`` both take."""
    return max_skip_connect is None or max_skip_connect >= 0, '--max-skip-connect must be non-negative'


def parameter_free(arch):
    """{cell: number of parameter-free ops (identity, max and average pooling) among its edges}."""
    return {cell: sum(op in PARAMETER_FREE for pairs in arch[cell].values() for op, _ in pairs) for cell in CELLS}


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


def load_alphas(path, num_nodes=7):
    """{name: array} of an alphas JSON file written by the search: the ALPHA_NAMES and, from an
    edge-normalised search, the BETA_NAMES, checked against the edges (and ops) of
    ``num_nodes``-node cells."""
    check_input(path, 'alphas file', MB)
    try:
        with open(path) as f:
            raw = json.load(f)
        names = ALPHA_NAMES + (BETA_NAMES if any(name in raw for name in BETA_NAMES) else ())
        arrays = {name: np.array(raw[name], dtype=np.float64) for name in names}
    except OSError as e:
        raise UserError('cannot read alphas file {}: {}'.format(path, e.strerror or e))
    except (ValueError, UnicodeDecodeError, TypeError, KeyError, RecursionError) as e:
        raise UserError('{} is not an alphas file ({} as JSON lists): {}'.format(path, ' and '.join(ALPHA_NAMES), e))
    for name, a in arrays.items():
        shape = (len(edges(num_nodes)), len(OP_NAMES) if name in ALPHA_NAMES else 1)
        if a.shape != shape or not np.isfinite(a).all():
            raise UserError('{}: {} must be {} finite numbers (edges x {} of --num-nodes {}), got shape {}'.format(
                path, name, 'x'.join(map(str, shape)), 'ops' if name in ALPHA_NAMES else '1', num_nodes, a.shape))
    return arrays


def derive_named(arrays, num_nodes, max_skip_connect=None):
    """The arch of {name: array} alphas, as the search derives it: with the betas where they are."""
    betas = [arrays[name] for name in BETA_NAMES] if BETA_NAMES[0] in arrays else None
    return derive(*[arrays[name] for name in ALPHA_NAMES], num_nodes, max_skip_connect, betas)


def epoch_file(folder, kind, epoch):
    """The file of ``kind`` ('arch' or 'alphas') that a search writes after ``epoch`` (from 1):
    folder/kind_epoch_N.json."""
    return os.path.join(folder, '{}_epoch_{}.json'.format(kind, epoch))


def cell_weights(alphas):
    """{cell name ('normal', 'reduction'): the weight of every op of every edge in the supernet,
    edges x ops} of ``alphas``, a mapping that holds the ALPHA_NAMES: their softmax, times each
    edge's normalised beta where the mapping holds the BETA_NAMES too (an edge-normalised search
    weighs its edges so); other keys are ignored."""
    weights = {}
    for alpha, beta in zip(ALPHA_NAMES, BETA_NAMES):
        w = softmax_weights(np.asarray(alphas[alpha]))
        if beta in alphas:
            w = w * normalised_betas(alphas[beta], nodes_of_rows(len(w)))[:, None]
        weights[alpha[len('alpha_'):]] = w
    return weights


def epoch_alphas(folder):
    """(epochs, {cell: array epochs x edges x ops of the weights of cell_weights}, num_nodes) of the
    alphas_epoch_N.json files that a search writes into its monitor folder, in epoch order."""
    start, end = epoch_file('', 'alphas', '|').split('|')  # the name around the epoch number
    found = sorted(int(name[len(start):-len(end)]) for name in os.listdir(folder)
                   if name.startswith(start) and name.endswith(end) and name[len(start):-len(end)].isdigit())
    if not found:
        raise UserError('{} has no alphas_epoch_N.json files: is it the monitor folder of a search?'.format(folder))
    rows = []
    for epoch in found:
        with open(epoch_file(folder, 'alphas', epoch)) as f:
            rows.append(cell_weights(json.load(f)))
    num_nodes = nodes_of_rows(len(rows[0]['normal']))
    return found, {cell: np.array([r[cell] for r in rows]) for cell in rows[0]}, num_nodes


def nodes_of_rows(rows):
    """The --num-nodes whose cells have ``rows`` edges."""
    for n in range(4, 64):
        if len(edges(n)) == rows:
            return n
    raise UserError('no cell has {} edges'.format(rows))


def command_plot(args):
    import plots  # matplotlib is loaded to draw, never to read or build a network
    for path, renderer in plots.draw_cells(cells(load(args.arch, args.num_nodes)), args.out):
        print('{} ({})'.format(path, renderer))


def command_derive(args):
    holds, message = skip_cap_rule(args.max_skip_connect)
    if not holds:
        raise UserError(message)
    check_output(args.out, '--out')
    arch = derive_named(load_alphas(args.alphas, args.num_nodes), args.num_nodes, args.max_skip_connect)
    save(arch, args.out)
    print(describe(arch))
    print('architecture written to {}'.format(args.out))


def command_evolution(args):
    import plots
    epochs, weights, num_nodes = epoch_alphas(args.monitor)
    check_output(args.out, '--out')
    plots.alpha_evolution(epochs, weights, edges(num_nodes), args.out)
    print('{} ({} epochs)'.format(args.out, len(epochs)))


def main(argv=None):
    parser = Parser(prog='genotype.py', description='Cells of an arch JSON, and archs and pictures from alphas.')
    commands = parser.add_subparsers(dest='command', required=True)
    plot = commands.add_parser('plot', help='draw the cells of an arch JSON')
    plot.add_argument('arch', help='arch JSON path, or DARTS_V1 / DARTS_V2')
    plot.add_argument('--out', default='.', help='folder of normal_cell.png and reduction_cell.png')
    plot.add_argument('--num-nodes', type=int, default=7, help='nodes of a cell')
    derive_ = commands.add_parser('derive', help='write the arch JSON of a saved alphas.json')
    derive_.add_argument('alphas', help='alphas JSON (alphas.json or alphas_epoch_N.json of a search)')
    derive_.add_argument('--out', required=True, help='arch JSON to write')
    derive_.add_argument('--max-skip-connect', type=int, default=None,
                         help='at most M identity ops in the normal cell (P-DARTS)')
    derive_.add_argument('--num-nodes', type=int, default=7, help='nodes of a cell')
    evolution = commands.add_parser('evolution', help='draw the softmax weights against the epoch')
    evolution.add_argument('monitor', help='monitor folder of a search (its alphas_epoch_N.json files)')
    evolution.add_argument('--out', default='alphas_evolution.png', help='PNG to write')
    args = parser.parse_args(argv)
    {'plot': command_plot, 'derive': command_derive, 'evolution': command_evolution}[args.command](args)
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
