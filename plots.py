"""Pictures of a run: DARTS-style cell diagrams and learning curves drawn from monitor series.

Cells are laid out by graphviz's ``dot`` when it is installed (the look of the paper's
figures); otherwise matplotlib draws the same graph, so a diagram is always written.
matplotlib's object API (``Figure``) is used directly: no pyplot, no global backend state.
"""
import os
import shutil
import subprocess

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch
from matplotlib.ticker import MaxNLocator

from files import series_path
from operations import IDENTITY, OP_NAMES

INPUTS = ('c_{k-2}', 'c_{k-1}')
OUTPUT = 'c_{k}'
COLORS = {'input': '#b4eeb4', 'node': '#add8e6', 'output': '#eee8aa'}


def op_label(op):
    """An op's name on a diagram; identity is drawn as skip_connect, as the paper does."""
    return 'skip_connect' if op == IDENTITY else OP_NAMES[op]


def node_name(index):
    """Diagram name of cell node ``index``: the two inputs, then intermediate nodes from 0."""
    return INPUTS[index] if index < 2 else str(index - 2)


def cell_edges(cell_nodes):
    """(source, target, label) of every edge, the unlabelled ones into the output included."""
    edges = [(node_name(inp), node_name(node), op_label(op)) for node, pairs in cell_nodes for op, inp in pairs]
    return edges + [(node_name(node), OUTPUT, '') for node, _ in cell_nodes]


def dot_source(cell_nodes):
    """The cell as graphviz source."""
    lines = ['digraph cell {', '  rankdir=LR; node [style=filled, shape=rect, fontsize=20, penwidth=2];',
             '  edge [fontsize=16, penwidth=1.5];']
    kinds = [(n, 'input') for n in INPUTS] + [(node_name(n), 'node') for n, _ in cell_nodes] + [(OUTPUT, 'output')]
    lines += ['  "{}" [fillcolor="{}"];'.format(n, COLORS[kind]) for n, kind in kinds]
    lines += ['  "{}" -> "{}" [label="{}"];'.format(*edge) for edge in cell_edges(cell_nodes)]
    return '\n'.join(lines + ['}']) + '\n'


def positions(cell_nodes):
    """Where matplotlib puts each node: inputs left, intermediates left to right, output right."""
    pos = {INPUTS[0]: (0.0, 1.0), INPUTS[1]: (0.0, -1.0)}
    for i, (node, _) in enumerate(cell_nodes):
        pos[node_name(node)] = (1.5 * (i + 1), 0.6 if i % 2 else -0.6)
    pos[OUTPUT] = (1.5 * (len(cell_nodes) + 1), 0.0)
    return pos


def draw_cell(cell_nodes, path):
    """The cell drawn with matplotlib: boxes, arrows, op names on the edges."""
    pos = positions(cell_nodes)
    fig = Figure(figsize=(2.2 * (len(cell_nodes) + 2), 4.5))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(-0.8, max(x for x, _ in pos.values()) + 0.8)
    ax.set_ylim(-1.8, 1.8)
    ax.axis('off')
    for k, (src, dst, label) in enumerate(cell_edges(cell_nodes)):
        (x0, y0), (x1, y1) = pos[src], pos[dst]
        bend = 0.25 if abs(x1 - x0) > 1.6 else 0.0
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), connectionstyle='arc3,rad={}'.format(bend),
                                     arrowstyle='-|>', mutation_scale=14, shrinkA=22, shrinkB=22, lw=1.2))
        if label:
            ax.text((x0 + x1) / 2 + bend * (y1 - y0) / 2, (y0 + y1) / 2 - bend * (x1 - x0) / 2, label,
                    ha='center', va='center', fontsize=8, bbox=dict(boxstyle='round', fc='white', ec='none'))
    for name, (x, y) in pos.items():
        kind = 'input' if name in INPUTS else 'output' if name == OUTPUT else 'node'
        ax.text(x, y, name, ha='center', va='center', fontsize=12,
                bbox=dict(boxstyle='square,pad=0.5', fc=COLORS[kind], ec='black', lw=1.5))
    fig.savefig(path, dpi=100)


def cell_diagram(cell_nodes, path):
    """Write the cell's diagram as PNG at ``path``: with graphviz when installed, else matplotlib."""
    dot = shutil.which('dot')
    if dot:
        result = subprocess.run([dot, '-Tpng', '-o', path], input=dot_source(cell_nodes), text=True,
                                capture_output=True)
        if result.returncode == 0:
            return 'graphviz'
    draw_cell(cell_nodes, path)
    return 'matplotlib'


def draw_cells(cells, folder):
    """Draw each cell of ``cells`` ({name: nodes}) as ``folder/<name>_cell.png``; returns the files
    written and the renderer."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for name, cell_nodes in cells.items():
        path = os.path.join(folder, '{}_cell.png'.format(name))
        renderer = cell_diagram(cell_nodes, path)
        written.append(path)
    return written, renderer


def read_series(folder, name):
    """(epochs, values) of a monitor series file, or None when the run has no such series."""
    path = series_path(folder, name)
    if not os.path.exists(path):
        return None
    data = np.loadtxt(path, ndmin=2)
    return (data[:, 0], data[:, 1]) if data.size else None


def learning_curves(folders, path, panels):
    """One PNG comparing runs: a panel per (title, series names), a line per run and series."""
    fig = Figure(figsize=(5.5 * len(panels), 4))
    styles = ('-', '--', ':')
    for p, (title, names) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        for r, folder in enumerate(folders):
            run = os.path.basename(os.path.normpath(folder))
            for s, name in enumerate(names):
                series = read_series(folder, name)
                if series is not None:
                    ax.plot(*series, styles[s % 3], color='C{}'.format(r % 10), marker='.',
                            label='{}: {}'.format(run, name) if len(folders) > 1 else name)
        ax.set_xlabel('epoch')
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def edge_labels(edge_list):
    """'i->j' for each (input, node) edge, in the alphas' row order."""
    return ['{}->{}'.format(i, j) for i, j in edge_list]


def alpha_weights(weights, edge_list, path, title=''):
    """The softmax weights of every edge (rows, labelled i->j) and op (columns) of each cell of
    ``weights`` ({cell name: edges x ops array}) as annotated heat maps side by side."""
    names = [op_label(k) for k in range(len(OP_NAMES))]
    fig = Figure(figsize=(6.5 * len(weights), 0.38 * len(edge_list) + 2.2))
    for c, (cell, w) in enumerate(weights.items()):
        ax = fig.add_subplot(1, len(weights), c + 1)
        low, high = float(w.min()), max(float(w.max()), float(w.min()) + 1e-9)  # the colours span the
        image = ax.imshow(w, cmap='Blues', vmin=low, vmax=high, aspect='auto')  # range: early, the weights differ little
        fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
        for (e, k), value in np.ndenumerate(w):
            ax.text(k, e, '{:.3f}'.format(value), ha='center', va='center', fontsize=7,
                    color='white' if value > (low + high) / 2 else 'black')
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha='right', fontsize=8)
        ax.set_yticks(range(len(edge_list)))
        ax.set_yticklabels(edge_labels(edge_list), fontsize=8)
        ax.set_title('{} cell{}'.format(cell, ': ' + title if title else ''))
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def alpha_evolution(epochs, weights, edge_list, path):
    """The softmax weight of every op against the epoch, a small panel per edge (rows) and cell
    (columns): ``weights`` is {cell name: array epochs x edges x ops}. Every panel has the same
    vertical scale, zoomed to the range the weights took: early in a search they all stay near
    1/8, and a scale from 0 would draw flat lines."""
    rows, cols = len(edge_list), len(weights)
    low = min(float(w.min()) for w in weights.values())
    high = max(float(w.max()) for w in weights.values())
    pad = max(high - low, 1e-6) * 0.05
    height = 1.5 * rows + 1
    fig = Figure(figsize=(4.2 * cols, height))
    for c, (cell, w) in enumerate(weights.items()):
        for e, label in enumerate(edge_labels(edge_list)):
            ax = fig.add_subplot(rows, cols, e * cols + c + 1)
            for k in range(w.shape[2]):
                ax.plot(epochs, w[:, e, k], color='C{}'.format(k), lw=1.2, label=op_label(k))
            ax.set_ylim(low - pad, high + pad)
            ax.set_title('{} {}'.format(cell, label), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(*fig.axes[0].get_legend_handles_labels(), fontsize=7, ncol=4, loc='upper center')
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.7 / height))
    fig.savefig(path, dpi=80)
