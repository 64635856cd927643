"""What a resume may change: every flag that changes what a job computes is refused in one line
(args.resume_config, checkpoint.newest), the RESUMABLE ones are taken, and the checkpoints of
earlier versions, which lack some keys, resume as they did."""
import json
import os

import pytest

import checkpoint
from args import IMPLIED_BY_ABSENCE, RESUMABLE, SEARCH, TRAIN, parse, resume_config
from errors import UserError
from helpers import SEARCH_TINY, TRAIN_TINY, one_line, run_cli

SEARCH_CHANGES = [['--arch-lr', '0.01'], ['--weight-decay-archs', '0'], ['--eta', '0.1'], ['--arch-warmup-epochs', '1'],
                  ['--hessian-every', '2'], ['--early-stop', 'True'], ['--hessian-batches', '2'],
                  ['--max-skip-connect', '2'], ['--model-lr', '0.1'], ['--min-model-lr', '0'], ['--momentum', '0.5'],
                  ['--weight-decay-model', '0'], ['--grad-clip-value-model', '1'], ['--lr-schedule', 'exponential'],
                  ['--color-jitter', '0.1', '0', '0', '0'], ['--partial-channels', '2'],
                  ['--edge-normalization', 'True'], ['--method', 'beta-darts']]
TRAIN_CHANGES = [['--dropout-rate', '0.1'], ['--label-smoothing', '0.1'], ['--auxiliary-weight', '1'],
                 ['--cutout', 'False'], ['--cutout-length', '8'], ['--test-images', '4'], ['--model-lr', '0.1'],
                 ['--lr-gamma', '0.5'], ['--weight-decay-model', '0']]
ALLOWED = ['-e', '3', '--model-save-interval', '2', '--data-workers', '0', '--tensorboard-every', '7',
           '--deterministic', 'True']


def write_checkpoint(folder, config):
    """A checkpoint folder whose state.json holds ``config`` (newest reads nothing else)."""
    os.makedirs(str(folder / 'checkpoint_000000001'))
    (folder / 'checkpoint_000000001' / 'state.json').write_text(json.dumps(
        dict(config=config, iteration=1, epochs_done=0, sums={}, count=0, elapsed=0.0, lr={}, extra={}, last={})))


def resumed(script, made_with, resumed_with, folder):
    config = resume_config(script, parse(script, made_with))
    write_checkpoint(folder, config)
    return checkpoint.newest(str(folder), resume_config(script, parse(script, resumed_with)), IMPLIED_BY_ABSENCE)


@pytest.mark.parametrize('script, base, change', [(SEARCH, SEARCH_TINY, c) for c in SEARCH_CHANGES] +
                         [(TRAIN, TRAIN_TINY, c) for c in TRAIN_CHANGES], ids=lambda v: ' '.join(v) if isinstance(v, list) else v)
def test_a_flag_that_changes_the_job_is_refused_both_ways(script, base, change, tmp_path):
    name = change[0][2:].replace('-', '_')
    for k, (made, resumed_with) in enumerate(((base, base + change), (base + change, base))):
        with pytest.raises(UserError, match='made with {} = '.format(name)):
            resumed(script, made, resumed_with, tmp_path / str(k))


def test_the_resumable_flags_are_taken(tmp_path):
    state, _ = resumed(SEARCH, SEARCH_TINY, SEARCH_TINY + ALLOWED, tmp_path / 's')
    assert state.iteration == 1
    resumed(TRAIN, TRAIN_TINY, TRAIN_TINY + ALLOWED, tmp_path / 't')
    assert {'epoch', 'model_save_interval', 'data_workers', 'tensorboard_every', 'deterministic'} <= set(RESUMABLE)


def test_a_checkpoint_of_an_earlier_version_resumes_and_its_absent_keys_mean_their_old_defaults(tmp_path):
    earlier = dict(num_cells=3, channels=4, num_nodes=5, batch_size=64, seed=0, second_order=False, train_images=0)
    write_checkpoint(tmp_path, earlier)
    config = resume_config(SEARCH, parse(SEARCH, SEARCH_TINY + ['-b', '64']))
    checkpoint.newest(str(tmp_path), config, IMPLIED_BY_ABSENCE)
    with pytest.raises(UserError, match='made with partial_channels = 1, this run has 2'):
        checkpoint.newest(str(tmp_path), dict(config, partial_channels=2), IMPLIED_BY_ABSENCE)
    with pytest.raises(UserError, match='made with num_cells = 3, this run has 4'):
        checkpoint.newest(str(tmp_path), dict(config, num_cells=4), IMPLIED_BY_ABSENCE)
    beta = resume_config(SEARCH, parse(SEARCH, SEARCH_TINY + ['-b', '64', '--method', 'beta-darts']))
    with pytest.raises(UserError, match='made with method = "darts", this run has "beta-darts"'):
        checkpoint.newest(str(tmp_path), beta, IMPLIED_BY_ABSENCE)


def test_the_search_refuses_another_arch_lr_in_one_line_before_any_data(tmp_path):
    folder = tmp_path / 'm'
    write_checkpoint(folder, resume_config(SEARCH, parse(SEARCH, SEARCH_TINY)))
    res = run_cli('darts_search.py', SEARCH_TINY + ['--arch-lr', '0.01', '--dataset-path', tmp_path / 'no.tar.gz',
                                                    '-m', folder, '--model-arch-name', folder / 'a.json', '--resume'])
    one_line(res, '--resume', 'arch_lr = 0.0003, this run has 0.01', code=2)
