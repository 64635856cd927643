"""Divergence: a loss (or the weights, or the test loss) that becomes NaN or infinite, forced
with an absurd learning rate (or, in a resumed run, which must keep the flags of the run it
continues, with NaN gradients injected into a step), stops the job with one line naming the
iteration, and no checkpoint, series point or result is written from the diverged weights.
"""
import glob
import math
import os
import re

import pytest

from faults.faultlib import CONFIGS, assert_loadable, checkpoint_iteration, run_injected, tally
from helpers import checkpoint_folders, one_line, run_cli, snapshot

pytestmark = pytest.mark.slow
MESSAGE = re.compile(r'error: (Training loss|Training error|Training objective|Validation loss|Validation error|'
                     r'Test loss|Test error|the weights) became (nan|inf|-inf) (at iteration|at the end of epoch \d+ '
                     r'\(iteration) (\d+)')
ABSURD = ['--model-lr', '1e12', '--grad-clip-value-model', '1e30']


def assert_nothing_diverged_was_written(folder, config):
    """Every checkpoint loads with finite values, every series point is finite, no final result."""
    for checkpoint in glob.glob(os.path.join(str(folder), 'checkpoint_*')):
        assert_loadable(checkpoint)
    for path in glob.glob(os.path.join(str(folder), '*.series.txt')):
        with open(path) as f:
            for line in f:
                assert math.isfinite(float(line.split()[1])), (path, line)
    for name in ('results.json', 'params.h5', 'model.nnp', 'alphas.json', 'arch.json'):
        assert not os.path.exists(os.path.join(str(folder), name)), name


@pytest.mark.parametrize('name, extra, iteration', [
    ('train', ['-s', '1'] + ABSURD, 1),                                        # the weights after step 1
    ('train', ['-s', '1', '--model-lr', '1e38', '--grad-clip-value-model', '1e30'], 0),  # infinite at once
    ('train', ['-b', '40', '-s', '0'] + ABSURD, 1),                           # the test loss of epoch 1
    ('search1', ['-s', '1'] + ABSURD, 1),
    ('search2', ['-s', '1', '--arch-lr', '1e38'], 1),
], ids=['train-weights', 'train-inf', 'train-test-loss', 'search1-model-lr', 'search2-arch-lr'])
def test_an_absurd_learning_rate_stops_at_the_iteration_it_diverged(name, extra, iteration, archive, tmp_path):
    config = CONFIGS[name]
    folder = tmp_path / 'm'
    with tally('divergence (NaN or infinite loss or weights)'):
        res = run_cli(config.program, config.argv(archive, folder, extra=extra))
        line = one_line(res, code=1)
        found = MESSAGE.match(line)
        assert found and int(found.group(4)) == iteration, line
        assert str(folder) in line
        assert_nothing_diverged_was_written(folder, config)
        found = checkpoint_folders(folder)
        assert ('the last checkpoint in' in line) == bool(found), line
        assert all(checkpoint_iteration(c) <= iteration for c in found)


@pytest.mark.parametrize('name, stop', [('train', 'accumulate:11:kill'), ('search1', 'accumulate:7:kill')])
def test_divergence_after_a_resume_leaves_the_good_checkpoints_as_they_were(name, stop, archive, tmp_path):
    """A good first epoch, then a resumed run whose first step diverges (NaN gradients): the
    checkpoints and series of the first epoch are left byte for byte."""
    config = CONFIGS[name]
    folder = tmp_path / 'm'
    with tally('divergence (NaN or infinite loss or weights)'):
        res, fired = run_injected(config.script, config.argv(archive, folder), [stop], log_dir=tmp_path)
        assert fired and res.returncode == -9, res.stderr[-2000:]
        before = snapshot(folder)
        res, fired = run_injected(config.script, config.argv(archive, folder, resume=True), ['step:1:nan'],
                                  log_dir=tmp_path)
        assert fired == ['step 1 nan'], res.stderr[-2000:]
        line = one_line(res, 'the last checkpoint in {} is left as it was'.format(folder), code=1)
        assert MESSAGE.match(line) and int(MESSAGE.match(line).group(4)) >= config.ipe, line
        after = snapshot(folder)
        for path, data in before.items():
            if path.startswith('checkpoint_') or path.endswith('.series.txt'):
                assert after.get(path) == data, path
        assert sorted(p for p in after if p.startswith('checkpoint_')) == \
            sorted(p for p in before if p.startswith('checkpoint_'))
        assert_nothing_diverged_was_written(folder, config)
