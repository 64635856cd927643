"""Pictures of a run: cell diagrams in the style of the DARTS paper, learning curves drawn from
monitor series, the alphas' weights.

Cells are laid out by graphviz's ``dot`` when it is installed (the look of the paper's
figures); otherwise matplotlib draws the same graph, so a diagram is always written.
matplotlib's object API (``Figure``) is used directly: no pyplot, no global backend state. It is
imported by the functions that draw, on their first call: a job that draws nothing (a refusal, a
summary) does not wait the half second its import takes.
"""
import os
import shutil
import subprocess

import numpy as np

from errors import warn
from files import series_path

COLORS = {'input': '#b4eeb4', 'node': '#add8e6', 'output': '#eee8aa'}
NODE_FONT, LABEL_FONT = 12, 9  # points
NODE_HEIGHT, LABEL_HEIGHT, MARGIN = 0.45, 0.26, 0.2  # inches


def drawn(draw, what):
    """What ``draw()`` returns (the files it drew), or [] with a warning naming ``what`` when it
    fails: a picture never stops a job (its numbers are in the series and JSON files)."""
    try:
        return draw()
    except Exception as e:  # matplotlib or font trouble
        warn('{} not drawn: {}'.format(what, e))
        return []


def kind(diagram, name):
    """'input', 'output' or 'node': how a node of a cell diagram (spaces.space.Diagram) is drawn."""
    return 'input' if name in diagram.inputs else 'output' if name == diagram.output else 'node'


def dot_source(diagram):
    """The cell as graphviz source."""
    lines = ['digraph cell {', '  rankdir=LR; node [style=filled, shape=rect, fontsize=20, penwidth=2];',
             '  edge [fontsize=16, penwidth=1.5];']
    lines += ['  "{}" [fillcolor="{}"];'.format(n, COLORS[kind(diagram, n)]) for n in depths(diagram)]
    lines += ['  "{}" -> "{}" [label="{}"];'.format(*edge) for edge in diagram.edges]
    return '\n'.join(lines + ['}']) + '\n'


def depths(diagram):
    """{name: depth} of every node of the diagram, inputs first: the inputs (and nodes that no edge
    enters) 0, a node one more than its deepest source, the output one more than the deepest
    other node. The edges come in an order that lists a node's entering edges before its leaving ones."""
    depth = dict.fromkeys(diagram.inputs, 0)
    for src, dst, _ in diagram.edges:
        depth.setdefault(src, 0)
        if dst != diagram.output:
            depth[dst] = max(depth.get(dst, 0), depth[src] + 1)
    depth[diagram.output] = 1 + max(depth.values())
    return depth


def chains(diagram):
    """Each edge of the diagram as the items it runs through, one per column, and {node: column}.
    As graphviz's ranks: a node's column is twice its depth, and the column after it holds the
    labels of the edges leaving it; an item is a node's name, or (edge, column) for a label or for
    the point where an edge crosses a column."""
    column = {name: 2 * d for name, d in depths(diagram).items()}
    return [[src] + [(k, c) for c in range(column[src] + 1, column[dst])] + [dst]
            for k, (src, dst, _) in enumerate(diagram.edges)], column


def text_width(text, size):
    """Width in inches of ``text`` at ``size`` points, in matplotlib's font."""
    from matplotlib.textpath import TextPath
    return TextPath((0, 0), text, size=size).get_extents().width / 72


def pack(wanted, gaps):
    """The positions nearest to ``wanted`` (least squares) that keep each item at least its gap
    below the one before: the pool-adjacent-violators algorithm."""
    offsets = np.concatenate([[0.0], np.cumsum(gaps)])
    blocks = []  # [mean, count]
    for q in np.asarray(wanted, dtype=float) - offsets:
        blocks.append([q, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            q, n = blocks.pop()
            blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + q * n) / (blocks[-1][1] + n), blocks[-1][1] + n]
    return np.repeat([q for q, _ in blocks], [n for _, n in blocks]) + offsets


def order(columns, segments):
    """Sort the items of each column top to bottom as graphviz does: sweeps that sort a column by
    the mean place of its neighbours in the column before (then after), keeping the order with the
    fewest edge crossings. The first column (the inputs) keeps its order (DARTS: c_{k-2} above c_{k-1})."""
    before, after = {}, {}
    for a, b in segments:
        before.setdefault(b, []).append(a)
        after.setdefault(a, []).append(b)

    def crossings(place):
        return sum((place[a] - place[c]) * (place[b] - place[d]) < 0
                   for i, (a, b) in enumerate(segments) for c, d in segments[i + 1:] if column_of[a] == column_of[c])

    column_of = {item: c for c, column in enumerate(columns) for item in column}
    place = {item: i for column in columns for i, item in enumerate(column)}
    best = (crossings(place), [list(column) for column in columns])
    for sweep in range(8):
        forward = sweep % 2 == 0
        for column in columns[1:] if forward else columns[-2:0:-1]:
            near = before if forward else after
            column.sort(key=lambda item: np.mean([place[n] for n in near[item]]) if item in near else place[item])
            place.update((item, i) for i, item in enumerate(column))
        best = min(best, (crossings(place), [list(column) for column in columns]), key=lambda b: b[0])
    return best[1]


def curve(points):
    """The Path through ``points`` (pairs: where an edge enters and leaves a column): level across
    each column, a cubic that leaves and arrives level across each gap between columns."""
    from matplotlib.path import Path
    vertices, codes = [points[0]], [Path.MOVETO]
    for i, (x1, y1) in enumerate(points[1:]):
        x0, y0 = points[i]
        vertices += [(x1, y1)] if i % 2 else [((x0 + x1) / 2, y0), ((x0 + x1) / 2, y1), (x1, y1)]
        codes += [Path.LINETO] if i % 2 else [Path.CURVE4] * 3
    return Path(vertices, codes)


def layout(diagram):
    """Where matplotlib draws the cell, in inches from the bottom left, as graphviz's dot would: a
    column per rank (``chains``), the items of a column ordered to cross few edges and moved close
    to their neighbours. An edge runs straight across a column at the height of its item (its
    label, drawn on it) and bends only in the gaps between columns, so it meets no box but its
    ends'. {'size': (width, height), 'nodes': {name: (x, y, width, height)}, 'labels': {edge:
    (x, y)}, 'paths': [Path of each edge of the diagram]}."""
    edges = diagram.edges
    paths, column_of = chains(diagram)
    node_width = max(text_width(name, NODE_FONT) for name in column_of) + 0.35
    labelled = {(k, column_of[src] + 1) for k, (src, _, label) in enumerate(edges) if label}
    size = {}
    columns = [[] for _ in range(column_of[diagram.output] + 1)]
    for path in [list(column_of)] + paths:
        for item in path:
            if item not in size:
                size[item] = ((node_width, NODE_HEIGHT) if item in column_of else (0.0, 0.0) if item not in labelled
                              else (text_width(edges[item[0]][2], LABEL_FONT) + 0.2, LABEL_HEIGHT))
                columns[column_of.get(item, item[-1])].append(item)
    segments = [(a, b) for path in paths for a, b in zip(path, path[1:])]
    columns = order(columns, segments)
    near = {}  # {(item, True): its neighbours in the column before, (item, False): in the column after}
    for a, b in segments:
        near.setdefault((b, True), []).append(a)
        near.setdefault((a, False), []).append(b)
    gaps = [[(size[a][1] + size[b][1]) / 2 + (0.2 if size[a][1] or size[b][1] else 0.12)
             for a, b in zip(column, column[1:])] for column in columns]
    down = {}  # the height of each item's centre, measured downwards
    for column, gap in zip(columns, gaps):
        down.update(zip(column, pack(np.zeros(len(column)), gap)))
    for sweep in range(12):
        forward = sweep % 2 == 0
        for c in range(1, len(columns)) if forward else range(len(columns) - 2, -1, -1):
            wanted = [np.mean([down[n] for n in near.get((item, forward), [item])]) for item in columns[c]]
            down.update(zip(columns[c], pack(wanted, gaps[c])))
    bottom = max(down[item] + size[item][1] / 2 for item in down) + MARGIN
    y = {item: bottom - down[item] for item in down}
    widths = [max([0.25] + [size[item][0] for item in column]) for column in columns]
    left = [MARGIN]
    for c, width in enumerate(widths[:-1]):
        rise = max([0.0] + [abs(y[a] - y[b]) for a, b in segments if a in columns[c]])
        left.append(left[-1] + width + float(np.clip(0.45 * rise, 0.55, 1.5)))
    x = {item: (left[c], left[c] + widths[c]) for c, column in enumerate(columns) for item in column}
    ports = {}  # the heights at which edges leave and enter a node box, spread along its side
    for (node, _), others in near.items():
        if node in column_of:
            spread = min(0.1 * (len(others) - 1), 0.7 * NODE_HEIGHT)
            for i, other in enumerate(sorted(others, key=lambda o: -y[o])):
                ports[other, node] = y[node] + spread / 2 - i * spread / max(len(others) - 1, 1)
    return {'size': (left[-1] + widths[-1] + MARGIN, bottom + MARGIN - min(down[i] - size[i][1] / 2 for i in down)),
            'nodes': {name: (sum(x[name]) / 2, y[name]) + size[name] for name in column_of},
            'labels': {item[0]: (sum(x[item]) / 2, y[item]) for item in labelled},
            'paths': [curve([(x[src][1], ports[path[1], src])]
                            + [(side, y[item]) for item in path[1:-1] for side in x[item]]
                            + [(x[dst][0], ports[path[-2], dst])]) for path, (src, dst, _) in zip(paths, edges)]}


def cell_figure(diagram):
    """The cell drawn with matplotlib (``layout``): boxes, arrows, op names on the edges. Returns the
    Figure and its artists: {'nodes': {name: (box, text)}, 'edges': [(source, target, arrow, label
    text or None) for each edge of the diagram]}."""
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, Rectangle
    plan = layout(diagram)
    width, height = plan['size']
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis('off')
    artists = {'nodes': {}, 'edges': []}
    for k, ((src, dst, label), path) in enumerate(zip(diagram.edges, plan['paths'])):
        arrow = ax.add_patch(FancyArrowPatch(path=path, arrowstyle='-|>', mutation_scale=12, lw=1.2, zorder=1))
        text = None
        if label:
            text = ax.text(*plan['labels'][k], label, ha='center', va='center', fontsize=LABEL_FONT, zorder=3,
                           bbox=dict(boxstyle='round,pad=0.2', fc='white', ec='none'))
        artists['edges'].append((src, dst, arrow, text))
    for name, (x, y, w, h) in plan['nodes'].items():
        box = ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, fc=COLORS[kind(diagram, name)], ec='black', lw=1.5,
                                     zorder=2))
        artists['nodes'][name] = (box, ax.text(x, y, name, ha='center', va='center', fontsize=NODE_FONT, zorder=4))
    return fig, artists


def draw_cell(diagram, path):
    """Write the matplotlib drawing of the cell (``cell_figure``) as PNG at ``path``."""
    cell_figure(diagram)[0].savefig(path, dpi=100)


def cell_diagram(diagram, path):
    """Write the cell's diagram as PNG at ``path``: with graphviz when installed, else matplotlib."""
    dot = shutil.which('dot')
    if dot:
        result = subprocess.run([dot, '-Tpng', '-o', path], input=dot_source(diagram), text=True,
                                capture_output=True)
        if result.returncode == 0:
            return 'graphviz'
    draw_cell(diagram, path)
    return 'matplotlib'


def draw_cells(diagrams, folder):
    """Draw each cell of ``diagrams`` ({picture name: spaces.space.Diagram}) as ``folder/<name>.png``;
    returns the (file, renderer) of every cell drawn."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for name, diagram in diagrams.items():
        path = os.path.join(folder, name + '.png')
        written.append((path, cell_diagram(diagram, path)))
    return written


def read_series(folder, name):
    """(epochs, values) of a monitor series file, or None when the run has no such series."""
    path = series_path(folder, name)
    if not os.path.exists(path):
        return None
    data = np.loadtxt(path, ndmin=2)
    return (data[:, 0], data[:, 1]) if data.size else None


def fixed_margins(fig, left=0.7, right=0.2, bottom=0.55, top=0.4, between=0.75):
    """Margins and gaps between side-by-side axes, in inches: half the cost of tight_layout, which
    draws the figure once more to measure it (a drawing every epoch of a job)."""
    width, height = fig.get_size_inches()
    columns = max(len(fig.axes), 1)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=between * columns / (width - left - right - between * (columns - 1)))


LOG_PANELS = ('perplexity',)  # the panels drawn on a log axis: a perplexity falls from the vocabulary's size


def learning_curves(folders, path, panels):
    """One PNG comparing runs: a panel per (title, series names), a line per run and series (on a
    log axis for LOG_PANELS)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
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
        if title in LOG_PANELS and ax.lines:
            ax.set_yscale('log')
        if ax.lines:
            ax.legend(fontsize=8)
    fixed_margins(fig)
    fig.savefig(path, dpi=90)


def seed_curves(curves, path, ylabel, references=None):
    """One line per run of ``curves`` ({label: (epochs, values)}) against the epoch, and a dashed
    horizontal line per {label: value} of ``references``."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    for k, (label, (epochs, values)) in enumerate(curves.items()):
        ax.plot(epochs, values, marker='.', color='C{}'.format(k % 10), label=label)
    for k, (label, value) in enumerate((references or {}).items()):
        ax.axhline(value, ls='--', color='0.5', lw=1)
        ax.annotate('{} ({:.2f})'.format(label, value), (0.01, value), xycoords=('axes fraction', 'data'),
                    textcoords='offset points', xytext=(0, 3), fontsize=8, color='0.35')
    ax.set_xlabel('epoch')
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
    fixed_margins(fig)
    fig.savefig(path, dpi=90)


def pareto_picture(cells, front, found, path):
    """Every cell's (multiply-adds in millions, accuracy) of ``cells`` as grey points, the ``front``
    as a line, and ``found`` ({label: [(x, y)]}) as rings of one colour per label, each label's
    smaller than the one before, so that labels which found the same cell all stay visible."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot(1, 1, 1)
    x, y = zip(*cells)
    ax.scatter(x, y, s=2, color='0.75', lw=0, label='every cell of the table')
    ax.plot(*zip(*front), color='0.2', lw=1, drawstyle='steps-post', label='Pareto front of the table')
    for k, (label, points) in enumerate(found.items()):
        ax.scatter(*zip(*points), s=30 + 60 * (len(found) - 1 - k), facecolor='none', edgecolor='C{}'.format(k % 10),
                   lw=1.8, zorder=3, label='{} ({} found)'.format(label, len(points)))
    ax.set_xlabel('multiply-adds per image (millions; C=16, N=5)')
    ax.set_ylabel('CIFAR-10 test accuracy in the table (%)')
    ax.set_ylim(max(0, min(p[1] for ps in found.values() for p in ps) - 10) if found else 0, 96)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc='lower right')
    fixed_margins(fig)
    fig.savefig(path, dpi=90)


def edge_labels(edge_list):
    """'i->j' for each (input, node) edge, in the alphas' row order."""
    return ['{}->{}'.format(i, j) for i, j in edge_list]


def alpha_weights(weights, edge_list, names, path, title=''):
    """The softmax weights of every edge (rows, labelled i->j) and op (columns, ``names``) of each
    cell of ``weights`` ({cell name: edges x ops array}) as annotated heat maps side by side."""
    from matplotlib.figure import Figure
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


def alpha_evolution(epochs, weights, edge_list, names, path):
    """The softmax weight of every op against the epoch, a small panel per edge (rows) and cell
    (columns): ``weights`` is {cell name: array epochs x edges x ops}. Every panel has the same
    vertical scale, zoomed to the range the weights took: early in a search they all stay near
    1/8, and a scale from 0 would draw flat lines."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
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
                ax.plot(epochs, w[:, e, k], color='C{}'.format(k), lw=1.2, label=names[k])
            ax.set_ylim(low - pad, high + pad)
            ax.set_title('{} {}'.format(cell, label), fontsize=8)
            ax.tick_params(labelsize=7)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.legend(*fig.axes[0].get_legend_handles_labels(), fontsize=7, ncol=4, loc='upper center')
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.7 / height))
    fig.savefig(path, dpi=80)
