"""Pictures: cell diagrams (graphviz or matplotlib) and learning curves from monitor series."""
import shutil

import numpy as np
import pytest
from PIL import Image

import genotype
import plots
from helpers import one_line, run_cli


def image(path):
    """The PNG at ``path`` as an RGB array (fails on anything that is not a readable PNG)."""
    with Image.open(str(path)) as im:
        assert im.format == 'PNG'
        return np.asarray(im.convert('RGB'))


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
        written, used = plots.draw_cells(genotype.cells(genotype.load(name)), str(tmp_path / name))
        assert used == renderer
        assert [p.split('/')[-1] for p in written] == ['normal_cell.png', 'reduction_cell.png']
        pictures[name] = [image(p) for p in written]
        for picture in pictures[name]:
            h, w, _ = picture.shape
            assert 150 < h < 3000 and 300 < w < 4000 and picture.std() > 10  # not blank
    v1, v2 = pictures['DARTS_V1'], pictures['DARTS_V2']
    assert v1[0].shape != v2[0].shape or not np.array_equal(v1[0], v2[0])
    assert not np.array_equal(v2[0], v2[1]) or v2[0].shape != v2[1].shape


def test_the_diagram_has_the_cell_s_edges_with_paper_names():
    edges = plots.cell_edges(genotype.nodes(genotype.load('DARTS_V2')['arch_normal']))
    assert ('c_{k-2}', '0', 'sep_conv_3x3') in edges and ('c_{k-1}', '0', 'sep_conv_3x3') in edges
    assert ('c_{k-2}', '2', 'skip_connect') in edges and ('0', '3', 'dil_conv_3x3') in edges
    assert sorted(e for e in edges if e[1] == 'c_{k}') == [(str(i), 'c_{k}', '') for i in range(4)]
    assert len(edges) == 8 + 4
    assert '"c_{k-2}" -> "2" [label="skip_connect"];' in plots.dot_source(genotype.nodes(
        genotype.load('DARTS_V2')['arch_normal']))


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
