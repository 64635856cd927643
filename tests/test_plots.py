"""Pictures: cell diagrams (graphviz or matplotlib) and learning curves from monitor series."""
import shutil

import numpy as np
import pytest
from PIL import Image

import genotype
import spaces
import plots
from helpers import one_line, run_cli


def image(path):
    """The PNG at ``path`` as an RGB array (fails on anything that is not a readable PNG)."""
    with Image.open(str(path)) as im:
        assert im.format == 'PNG'
        return np.asarray(im.convert('RGB'))


NB201_CELL = '|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|'


def diagrams(name):
    """{picture name: Diagram} of the cells of an arch that ``name`` gives, in its own space."""
    space = spaces.get(genotype.space_named(name))
    return space.diagrams(genotype.load(name, space))


@pytest.fixture(params=['graphviz', 'matplotlib'])
def renderer(request, monkeypatch):
    if request.param == 'graphviz' and shutil.which('dot') is None:
        pytest.skip('graphviz is not installed here')  # the matplotlib case still runs
    if request.param == 'matplotlib':
        monkeypatch.setattr(plots.shutil, 'which', lambda name: None)
    return request.param


def test_cell_diagrams_are_images_that_depend_on_the_arch(tmp_path, renderer):
    pictures = {}
    for name in ('DARTS_V1', 'DARTS_V2'):
        drawn_cells = plots.draw_cells(diagrams(name), str(tmp_path / name))
        written = [path for path, _ in drawn_cells]
        assert [used for _, used in drawn_cells] == [renderer, renderer]
        assert [p.split('/')[-1] for p in written] == ['normal_cell.png', 'reduction_cell.png']
        pictures[name] = [image(p) for p in written]
        for picture in pictures[name]:
            h, w, _ = picture.shape
            assert 150 < h < 3000 and 300 < w < 4000 and picture.std() > 10  # not blank
    v1, v2 = pictures['DARTS_V1'], pictures['DARTS_V2']
    assert v1[0].shape != v2[0].shape or not np.array_equal(v1[0], v2[0])
    assert not np.array_equal(v2[0], v2[1]) or v2[0].shape != v2[1].shape


def test_draw_cells_names_each_cell_s_renderer_and_draws_nothing_of_no_cells(tmp_path, monkeypatch):
    calls = iter(['graphviz', 'matplotlib'])
    monkeypatch.setattr(plots, 'cell_diagram', lambda cell_nodes, path: next(calls))
    assert plots.draw_cells(diagrams('DARTS_V2'), str(tmp_path)) == [(str(tmp_path / 'normal_cell.png'), 'graphviz'),
                                                      (str(tmp_path / 'reduction_cell.png'), 'matplotlib')]
    assert plots.draw_cells({}, str(tmp_path / 'none')) == []


def test_the_diagram_has_the_cell_s_edges_with_paper_names():
    edges = diagrams('DARTS_V2')['normal_cell'].edges
    assert ('c_{k-2}', '0', 'sep_conv_3x3') in edges and ('c_{k-1}', '0', 'sep_conv_3x3') in edges
    assert ('c_{k-2}', '2', 'skip_connect') in edges and ('0', '3', 'dil_conv_3x3') in edges
    assert sorted(e for e in edges if e[1] == 'c_{k}') == [(str(i), 'c_{k}', '') for i in range(4)]
    assert len(edges) == 8 + 4
    assert '"c_{k-2}" -> "2" [label="skip_connect"];' in plots.dot_source(diagrams('DARTS_V2')['normal_cell'])


def test_a_nas_bench_201_diagram_leaves_out_the_none_edges_and_has_its_output_last():
    diagram, = diagrams(NB201_CELL).values()
    assert diagram.inputs == ('0',) and diagram.output == '3'
    assert diagram.edges == [('0', '1', 'nor_conv_3x3'), ('1', '2', 'avg_pool_3x3'), ('0', '3', 'skip_connect'),
                             ('2', '3', 'nor_conv_1x1')]
    assert plots.depths(diagram) == {'0': 0, '1': 1, '2': 2, '3': 3}
    lone, = diagrams('|none~0|+|nor_conv_3x3~0|none~1|+|none~0|nor_conv_1x1~1|none~2|').values()
    assert plots.depths(lone) == {'0': 0, '2': 1, '1': 0, '3': 2}  # node 1 reads nothing: zeros, drawn as a source


CELLS = [(name, cell + '_cell') for name in ('DARTS_V2', 'DARTS_V1') for cell in ('normal', 'reduction')] + [
    (NB201_CELL, 'cell')]


@pytest.fixture(scope='module', params=CELLS, ids=[c if n.startswith('DARTS') else 'nas-bench-201' for n, c in CELLS])
def drawn(request):
    """A paper cell drawn by matplotlib on the Agg canvas: (cell nodes, ``plots.cell_figure``'s
    artists, the renderer, the figure's box in display coordinates)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    name, cell = request.param
    diagram = diagrams(name)[cell]
    fig, artists = plots.cell_figure(diagram)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return diagram, artists, canvas.get_renderer(), fig.bbox


def label_boxes(artists, renderer):
    """[(edge index, box of the label's text, box of its white background)] of the labelled edges."""
    return [(k, text.get_window_extent(renderer), text.get_bbox_patch().get_window_extent(renderer))
            for k, (_, _, _, text) in enumerate(artists['edges']) if text is not None]


def node_boxes(artists, renderer):
    """{name: box} of the node boxes as drawn."""
    return {name: box.get_window_extent(renderer) for name, (box, _) in artists['nodes'].items()}


def test_the_matplotlib_cell_is_the_cell_s_graph(drawn):
    diagram, artists, renderer, _ = drawn
    assert [(src, dst, text.get_text() if text else '') for src, dst, _, text in artists['edges']] == diagram.edges
    assert sorted(artists['nodes']) == sorted(plots.depths(diagram))
    for name, (box, text) in artists['nodes'].items():
        assert text.get_text() == name
        assert box.get_window_extent(renderer).contains(*text.get_window_extent(renderer).min)
        assert box.get_window_extent(renderer).contains(*text.get_window_extent(renderer).max)


def test_every_op_label_is_whole_and_clear_of_labels_and_nodes(drawn):
    _, artists, renderer, figure = drawn
    labels, nodes = label_boxes(artists, renderer), node_boxes(artists, renderer)
    assert len(labels) == sum(1 for _, _, label in drawn[0].edges if label) in (8, 4)
    for i, (k, text, background) in enumerate(labels):
        assert background.contains(*text.min) and background.contains(*text.max)
        assert figure.contains(*background.min) and figure.contains(*background.max)
        for name, box in nodes.items():
            assert not background.overlaps(box), (artists['edges'][k][:2], name)
        for other, _, other_background in labels[i + 1:]:
            assert not background.overlaps(other_background), (artists['edges'][k][:2], artists['edges'][other][:2])
    for box in nodes.values():
        assert figure.contains(*box.min) and figure.contains(*box.max)


def test_nodes_stand_in_columns_by_depth(drawn):
    diagram, artists, renderer, _ = drawn
    depth = dict.fromkeys(diagram.inputs, 0)
    for src, dst, _ in diagram.edges:
        if dst != diagram.output:
            depth[dst] = max(depth.get(dst, 0), 1 + depth[src])
    depth[diagram.output] = max(depth.values()) + 1
    assert plots.depths(diagram) == depth
    centres = {name: (box.x0 + box.x1) / 2 for name, box in node_boxes(artists, renderer).items()}
    columns = [[centres[n] for n in depth if depth[n] == d] for d in range(depth[diagram.output] + 1)]
    assert all(max(xs) - min(xs) < 0.5 for xs in columns)
    assert all(a[0] < b[0] for a, b in zip(columns, columns[1:]))  # so inputs leftmost, output rightmost
    assert len(columns[0]) == len(diagram.inputs) and columns[-1] == [centres[diagram.output]]


def sampled(arrow, step=2.0):
    """Points every ``step`` pixels or less along the drawn arrow (its line and its head), in display
    coordinates."""
    points = []
    for polygon in arrow.get_transform().transform_path(arrow.get_path()).to_polygons(closed_only=False):
        for a, b in zip(polygon, polygon[1:]):
            n = int(np.hypot(*(b - a)) // step) + 1
            points.append(a + np.linspace(0, 1, n, endpoint=False)[:, None] * (b - a))
        points.append(polygon[-1:])
    return np.concatenate(points)


def inside(points, box):
    """Which of ``points`` lie strictly inside ``box``."""
    return (points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0) & (points[:, 1] < box.y1)


def test_edges_meet_no_box_but_their_ends_and_no_other_edge_s_label(drawn):
    _, artists, renderer, _ = drawn
    nodes, labels = node_boxes(artists, renderer), label_boxes(artists, renderer)
    for k, (src, dst, arrow, _) in enumerate(artists['edges']):
        points = sampled(arrow)
        assert len(points) > 50
        for name, box in nodes.items():
            assert name in (src, dst) or not inside(points, box).any(), (src, dst, name)
        for other, _, background in labels:
            assert other == k or not inside(points, background).any(), (src, dst, artists['edges'][other][:2])
        assert inside(points, nodes[src].padded(3)).any() and inside(points, nodes[dst].padded(3)).any()


def test_the_matplotlib_drawing_is_written_as_png(tmp_path):
    diagram = diagrams('DARTS_V2')['normal_cell']
    plots.draw_cell(diagram, str(tmp_path / 'cell.png'))
    picture = image(tmp_path / 'cell.png')
    width, height = plots.layout(diagram)['size']
    assert np.allclose(picture.shape[:2], (100 * height, 100 * width), atol=1) and picture.std() > 10


def test_genotype_plot_cli(tmp_path):
    proc = run_cli('genotype.py', ['plot', 'DARTS_V2', '--out', tmp_path])
    assert proc.returncode == 0, proc.stderr
    assert image(tmp_path / 'normal_cell.png').size and image(tmp_path / 'reduction_cell.png').size
    one_line(run_cli('genotype.py', ['plot', tmp_path / 'missing.json']), 'cannot read arch file')


def write_series(folder, name, values):
    folder.mkdir(exist_ok=True)
    (folder / (name.replace(' ', '-') + '.series.txt')).write_text(
        ''.join('{} {}\n'.format(i + 1, v) for i, v in enumerate(values)))


def test_learning_curves_compare_runs(tmp_path):
    for run, errors in (('a', [0.9, 0.5, 0.3]), ('b', [0.8, 0.7, 0.6])):
        write_series(tmp_path / run, 'Test error', errors)
        write_series(tmp_path / run, 'Training error', [e + 0.05 for e in errors])
        write_series(tmp_path / run, 'Learning rate', [0.025, 0.0125, 0.0])
    panels = (('error', ('Training error', 'Test error')), ('learning rate', ('Learning rate',)))
    plots.learning_curves([str(tmp_path / 'a')], str(tmp_path / 'one.png'), panels)
    plots.learning_curves([str(tmp_path / 'a'), str(tmp_path / 'b')], str(tmp_path / 'two.png'), panels)
    one, two = image(tmp_path / 'one.png'), image(tmp_path / 'two.png')
    assert one.shape == two.shape and not np.array_equal(one, two)
    assert np.array_equal(plots.read_series(str(tmp_path / 'b'), 'Test error')[1], [0.8, 0.7, 0.6])
    assert plots.read_series(str(tmp_path / 'b'), 'Test loss') is None


def test_plot_flag_of_darts_train(tmp_path):
    for run in ('r1', 'r2', 'r3'):
        for name in ('Test error', 'Training error', 'Test loss', 'Training loss', 'Learning rate'):
            write_series(tmp_path / run, name, np.random.RandomState(len(run)).rand(4))
    proc = run_cli('darts_train.py', ['--plot', 'r1', 'r2', 'r3'], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert image(tmp_path / 'performance.png').shape[1] > 1000
    one_line(run_cli('darts_train.py', ['--plot', tmp_path], cwd=tmp_path), 'not a monitor folder')
