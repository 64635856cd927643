"""--tensorboard, read back with TensorBoard's own reader (EventAccumulator): the tags, steps and
values of every monitor series, the search's images and histograms, the running values, the
hparams of a retraining; a resumed run without a step twice; the refusals before any work."""
import glob
import os
import shutil

import numpy as np
import pytest

from helpers import NO_EIGENVALUE, SEARCH_TINY, TRAIN_TINY, checkpoint_folders, one_line, run_cli, train
from test_train_cli import results as results_of

pytest.importorskip('tensorboard', reason='the tests read the events with TensorBoard (make venv installs it)')
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def events(folder):
    """The EventAccumulator of ``folder``, everything kept."""
    accumulator = EventAccumulator(str(folder), size_guidance={'scalars': 0, 'images': 0, 'histograms': 0,
                                                               'tensors': 0})
    accumulator.Reload()
    return accumulator


def series_files(monitor):
    """{file stem ('Test-error'): [(epoch, value)]} of a monitor folder's series."""
    found = {}
    for path in glob.glob(os.path.join(str(monitor), '*.series.txt')):
        with open(path) as f:
            found[os.path.basename(path)[:-len('.series.txt')]] = [(int(i), float(v)) for i, v in
                                                                   (line.split() for line in f if line.strip())]
    return found


def scalars_by_series(accumulator):
    """{series file stem: [(step, value)]} of the board's scalars (their tags: '[running/]panel/stem')."""
    return {tag.rsplit('/', 1)[1]: [(e.step, e.value) for e in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()['scalars']}


def assert_board_is_the_monitor(board, monitor):
    """Every series of the monitor folder is a scalar of the board, at its epochs, with its values."""
    series, scalars = series_files(monitor), scalars_by_series(events(board))
    assert sorted(series) == sorted(scalars)
    for name, points in series.items():
        assert [s for s, _ in scalars[name]] == [e for e, _ in points], name
        np.testing.assert_allclose([v for _, v in scalars[name]], [v for _, v in points], rtol=1e-5, err_msg=name)


def test_a_search_writes_every_series_the_alphas_and_the_cells_of_every_epoch(archive, tmp_path):
    monitor, board = tmp_path / 'm', tmp_path / 'tb'
    res = run_cli('darts_search.py', SEARCH_TINY + NO_EIGENVALUE + ['-e', '2', '--dataset-path', archive, '-m', monitor,
                                                    '--model-arch-name', tmp_path / 'arch.json', '--tensorboard',
                                                    board, '--tensorboard-every', '2'])
    assert res.returncode == 0, res.stderr
    assert_board_is_the_monitor(board, monitor)
    accumulator = events(board)
    assert 'parameter-free-ops-in-the-derived-cells/Parameter-free-ops-normal' in accumulator.Tags()['scalars']
    for tag in ('alpha-weights', 'cells/normal', 'cells/reduction'):
        assert [e.step for e in accumulator.Images(tag)] == [1, 2], tag
    image = accumulator.Images('alpha-weights')[-1]
    assert image.width > 200 and image.height > 100 and image.encoded_image_string[:4] == b'\x89PNG'
    for name in ('alpha_normal', 'alpha_reduction'):
        histogram = accumulator.Histograms('alphas/' + name)
        assert [h.step for h in histogram] == [1, 2] and histogram[0].histogram_value.num == 5 * 8  # 5 edges
    running = scalars_by_series(events(board / 'iterations'))
    assert [s for s, _ in running['Training-loss']] == [2, 4, 6, 8, 10]  # 5 steps an epoch, every 2 iterations
    assert set(running) >= {'Training-loss', 'Validation-error', 'Learning-rate'}


def test_a_resumed_retraining_continues_the_events_without_a_step_twice(archive, tmp_path):
    flags = TRAIN_TINY + ['--dataset-path', archive, '-b', 4, '-e', 2, '-s', 3, '--tensorboard-every', 4]
    a, b = tmp_path / 'A', tmp_path / 'B'
    assert train(*flags, '-m', a, '--tensorboard', a / 'tb').returncode == 0
    shutil.copytree(str(a), str(b))  # the same run (seeded), stopped after its last checkpoint but one:
    shutil.rmtree(checkpoint_folders(b, complete=False)[-1])  # back to iteration 18, in the second epoch
    for name in ('params.h5', 'results.json'):
        os.remove(str(b / name))
    res = train(*flags, '-m', b, '--tensorboard', b / 'tb', '--resume')  # the board's folder, copied
    assert res.returncode == 0, res.stderr
    assert len(glob.glob(str(b / 'tb' / 'events.out.tfevents.*'))) == 2  # the stopped run's and the resumed one's
    for sub in ('', 'iterations'):
        first, resumed = events(a / 'tb' / sub), events(b / 'tb' / sub)
        assert sorted(first.Tags()['scalars']) == sorted(resumed.Tags()['scalars'])
        for tag in first.Tags()['scalars']:
            steps = [e.step for e in resumed.Scalars(tag)]
            assert steps == sorted(set(steps)) == [e.step for e in first.Scalars(tag)], (sub, tag)
            if 'Elapsed' not in tag:
                assert [e.value for e in resumed.Scalars(tag)] == [e.value for e in first.Scalars(tag)], (sub, tag)
    assert [e.step for e in events(b / 'tb' / 'iterations').Scalars('running/loss/Training-loss')] == [4, 8, 12, 16, 20]
    assert_board_is_the_monitor(b / 'tb', b)
    hparams = events(b / 'tb' / 'hparams')
    assert [e.value for e in hparams.Scalars('Test_error')] == pytest.approx([results_of(b)['test_error']])


def test_the_board_is_refused_in_one_line_before_any_work(archive, tmp_path):
    fake = tmp_path / 'fake'
    fake.mkdir()
    (fake / 'tensorboardX.py').write_text('raise ImportError("not installed here")\n')
    base = TRAIN_TINY + ['--dataset-path', tmp_path / 'no-data.tar.gz', '-b', 4, '-m', tmp_path / 'm']
    one_line(train(*base, '--tensorboard', tmp_path / 'tb', PYTHONPATH=fake), '--tensorboard needs tensorboardX',
             'requirements-tensorboard.txt')
    used = tmp_path / 'used'
    (used / 'iterations').mkdir(parents=True)
    (used / 'iterations' / 'events.out.tfevents.1.host').write_bytes(b'')
    one_line(train(*TRAIN_TINY, '--dataset-path', archive, '-b', 4, '-m', tmp_path / 'm2', '--tensorboard', used),
             'already holds the events of a run', '--resume')
    assert not os.path.exists(str(tmp_path / 'm')) and not os.path.exists(str(tmp_path / 'tb'))
