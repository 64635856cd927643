"""Architectures of any search space as data: the arch of --model-arch-name (a file, or a name or
string that a space knows) read and validated, written, described; the alphas files of a search
and its per-epoch files; and the commands on them:

    python genotype.py plot ARCH --out DIR     # DIR/<cell>_cell.png for each cell of the arch
    python genotype.py derive ALPHAS_JSON --out ARCH_JSON [--max-skip-connect M] [--num-nodes N]
    python genotype.py evolution MONITOR_PATH --out PNG   # the softmax weights against the epoch

A space's own format: spaces/<space>/arch.py; all of them: docs/reference.md.
"""
import json
import os
import sys
import tempfile

import numpy as np

import spaces
from errors import Parser, UserError, run
from files import MB, check_input, check_output, write_atomic, write_json


def read_json(path, what):
    """The JSON value of the file ``path`` (a ``what``: 'arch file', 'alphas file'), refused in one line."""
    check_input(path, what, MB)
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise UserError('cannot read {} {}: {}'.format(what, path, e.strerror or e))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError('{} is not valid JSON: {}'.format(path, e))
    except RecursionError:  # json's decoder recurses once per level of nesting
        raise UserError('{} is not valid JSON: nested too deeply for an {}'.format(path, what))


def arch_value(name):
    """The arch that ``name`` (--model-arch-name) gives, as its space reads it: a name or string that
    a space knows (DARTS_V2, a NAS-Bench-201 cell string) where no file has that name, else the
    JSON value of the file."""
    if spaces.named_by(name) is not None and not os.path.exists(name):
        return name
    return read_json(name, 'arch file')


def space_named(name):
    """The name of the space of the arch that ``name`` gives, or None (a file of no space's format,
    which the space of the run then refuses with its reasons)."""
    return spaces.named_by(arch_value(name))


def load(name, space=None):
    """The validated arch of ``name`` (a file, or a name or string a space knows) in ``space`` (a
    spaces.space.Space; None: the space the arch names, at its defaults); an arch of another space
    is refused."""
    value = arch_value(name)
    space = space or spaces.get(spaces.named_by(value) or spaces.DEFAULT)
    named = spaces.named_by(value)
    if named is None and isinstance(value, dict):
        raise UserError('{}: search_space {} is not one of {}'.format(name, json.dumps(value.get('search_space')),
                                                                      ', '.join(spaces.NAMES)))
    if named not in (None, space.name) and not (isinstance(value, str) and space.claims(value)):
        raise UserError('{} is an arch of the {} space, and this run is on --search-space {}'.format(
            name, spaces.SPACES[named].title, space.name))
    return space.parse(value, name)


def save(arch, path, space):
    """Write ``arch`` of ``space`` as its JSON file atomically (temporary file, then rename), after
    the checks that reading it makes."""
    space.parse(arch, path)
    write_atomic(path, lambda f: f.write(space.document(arch)))


def epoch_file(folder, kind, epoch):
    """The file of ``kind`` ('arch' or 'alphas') that a search writes after ``epoch`` (from 1):
    folder/kind_epoch_N.json."""
    return os.path.join(folder, '{}_epoch_{}.json'.format(kind, epoch))


def named_arrays(alphas):
    """{short name ('alpha_normal', 'beta_reduction', ...): array} of the alpha parameters."""
    return {name.split('/')[-1]: a.d for name, a in alphas.items()}


def alpha_dict(alphas):
    """The raw alphas as JSON lists, rows in edge order 0->2, 1->2, 0->3, ..."""
    return {name: d.tolist() for name, d in named_arrays(alphas).items()}


def draw_alphas(alphas, space, folder, epoch):
    """Refresh folder/alphas.png (softmax weights of every edge and op); [path], or [] if it failed."""
    from plots import alpha_weights, drawn  # matplotlib is loaded to draw, never to read an arch
    path = os.path.join(folder, 'alphas.png')

    def draw():
        alpha_weights(space.cell_weights(named_arrays(alphas)), space.edges, space.op_labels, path,
                      'epoch {}'.format(epoch + 1))
        return [path]
    return drawn(draw, 'alphas.png')


def write_epoch(arch, alphas, space, folder, epoch, events):
    """The files of ``epoch`` (from 0) that DARTS-ES may return to and ``genotype.py evolution``
    reads: arch_epoch_N.json and alphas_epoch_N.json (N from 1); alphas.png redrawn; and in the
    TensorBoard ``events`` that picture, the cells derived and histograms of the alphas."""
    save(arch, epoch_file(folder, 'arch', epoch + 1), space)
    write_json(alpha_dict(alphas), epoch_file(folder, 'alphas', epoch + 1))
    for path in draw_alphas(alphas, space, folder, epoch):
        events.image('alpha-weights', path, epoch + 1)
    if events.active:
        from plots import draw_cells, drawn
        with tempfile.TemporaryDirectory() as scratch:
            for path in drawn(lambda: [p for p, _ in draw_cells(space.diagrams(arch), scratch)], 'the cell diagrams'):
                events.image('cells/' + os.path.basename(path)[:-len('.png')].replace('_cell', ''), path, epoch + 1)
        for name, values in named_arrays(alphas).items():
            events.histogram('alphas/' + name, values, epoch + 1)


def space_of_alphas(raw, source):
    """The name of the space whose alphas the JSON object ``raw`` (an alphas file) holds."""
    for name, space in spaces.SPACES.items():
        if isinstance(raw, dict) and space.alpha_names[0] in raw:
            return name
    raise UserError('{} is not an alphas file: it holds none of {}'.format(
        source, ', '.join(space.alpha_names[0] for space in spaces.SPACES.values())))


def alpha_arrays(raw, space, source):
    """{name: array} of the alphas (and the betas where any is there) of the JSON object ``raw``,
    checked against ``space``."""
    names = space.alpha_names + (space.beta_names if any(name in raw for name in space.beta_names) else ())
    try:
        arrays = {name: np.array(raw[name], dtype=np.float64) for name in names}
    except (ValueError, TypeError, KeyError) as e:
        raise UserError('{} is not an alphas file ({} as JSON lists): {}'.format(source, ' and '.join(names), e))
    space.check_alphas(arrays, source)
    return arrays


def load_alphas(path, num_nodes=7):
    """(the space, {name: array}) of an alphas JSON file written by a search (its keys say the
    space; DARTS cells of ``num_nodes`` nodes)."""
    raw = read_json(path, 'alphas file')
    space = spaces.get(space_of_alphas(raw, path), num_nodes=num_nodes)
    return space, alpha_arrays(raw, space, path)


def epoch_alphas(folder):
    """(epochs, {cell: array epochs x edges x ops of the weights of the space's cell_weights}, the
    space) of the alphas_epoch_N.json files that a search writes into its monitor folder, in
    epoch order."""
    start, end = epoch_file('', 'alphas', '|').split('|')  # the name around the epoch number
    found = sorted(int(name[len(start):-len(end)]) for name in os.listdir(folder)
                   if name.startswith(start) and name.endswith(end) and name[len(start):-len(end)].isdigit())
    if not found:
        raise UserError('{} has no alphas_epoch_N.json files: is it the monitor folder of a search?'.format(folder))
    raws = [read_json(epoch_file(folder, 'alphas', epoch), 'alphas file') for epoch in found]
    space = spaces.SPACES[space_of_alphas(raws[0], folder)].for_alphas(raws[0])
    rows = [space.cell_weights(alpha_arrays(raw, space, epoch_file(folder, 'alphas', epoch)))
            for raw, epoch in zip(raws, found)]
    return found, {cell: np.array([r[cell] for r in rows]) for cell in rows[0]}, space


def command_plot(args):
    import plots  # matplotlib is loaded to draw, never to read or build a network
    space = spaces.get(space_named(args.arch) or spaces.DEFAULT, num_nodes=args.num_nodes)
    for path, renderer in plots.draw_cells(space.diagrams(load(args.arch, space)), args.out):
        print('{} ({})'.format(path, renderer))


def skip_cap_rule(max_skip_connect):
    """(holds, message) of --max-skip-connect, which the search and ``genotype.py derive`` both take."""
    return max_skip_connect is None or max_skip_connect >= 0, '--max-skip-connect must be non-negative'


def command_derive(args):
    holds, message = skip_cap_rule(args.max_skip_connect)
    if not holds:
        raise UserError(message)
    check_output(args.out, '--out')
    space, arrays = load_alphas(args.alphas, args.num_nodes)
    arch = space.derive(arrays, args.max_skip_connect)
    save(arch, args.out, space)
    print(space.describe(arch))
    print('architecture written to {}'.format(args.out))


def command_evolution(args):
    import plots
    epochs, weights, space = epoch_alphas(args.monitor)
    check_output(args.out, '--out')
    plots.alpha_evolution(epochs, weights, space.edges, space.op_labels, args.out)
    print('{} ({} epochs)'.format(args.out, len(epochs)))


def main(argv=None):
    parser = Parser(prog='genotype.py', description='Cells of an arch JSON, and archs and pictures from alphas.')
    commands = parser.add_subparsers(dest='command', required=True)
    plot = commands.add_parser('plot', help='draw the cells of an arch')
    plot.add_argument('arch', help='arch JSON path, DARTS_V1 / DARTS_V2, or a NAS-Bench-201 cell string')
    plot.add_argument('--out', default='.', help='folder of the <cell>_cell.png pictures')
    plot.add_argument('--num-nodes', type=int, default=7, help='nodes of a DARTS cell')
    derive_ = commands.add_parser('derive', help='write the arch JSON of a saved alphas.json')
    derive_.add_argument('alphas', help='alphas JSON (alphas.json or alphas_epoch_N.json of a search)')
    derive_.add_argument('--out', required=True, help='arch JSON to write')
    derive_.add_argument('--max-skip-connect', type=int, default=None,
                         help='at most M skip connections in the (normal) cell (P-DARTS)')
    derive_.add_argument('--num-nodes', type=int, default=7, help='nodes of a DARTS cell')
    evolution = commands.add_parser('evolution', help='draw the softmax weights against the epoch')
    evolution.add_argument('monitor', help='monitor folder of a search (its alphas_epoch_N.json files)')
    evolution.add_argument('--out', default='alphas_evolution.png', help='PNG to write')
    args = parser.parse_args(argv)
    {'plot': command_plot, 'derive': command_derive, 'evolution': command_evolution}[args.command](args)
    return 0


if __name__ == '__main__':
    sys.exit(run(main))
