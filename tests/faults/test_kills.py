"""Hard kills: SIGKILL darts_train.py and darts_search.py (first and second order) at seeded
random moments and at exact places, resume with --resume, and compare with the uninterrupted
run of the same seed: identical final parameters, alphas, test error and series (no missing
and no duplicated points). A kill during a checkpoint write leaves the previous one loadable.

A chain is one run killed several times: each kill is followed by a resumed run (or, when no
checkpoint exists yet, by a new one, as --resume without a checkpoint is refused), and the
last resumed run goes to the end.
"""
import os
import random
import sys

import pytest

from faults.faultlib import (CONFIGS, assert_identical, assert_loadable, checkpoint_iteration, checkpoint_traces,
                             kill_after, run_injected, tally, what_was_hit)
from helpers import checkpoint_folders, run_cli

pytestmark = pytest.mark.slow
CHECKPOINT_WRITES = ('ckpt_params', 'ckpt_solver', 'ckpt_state', 'ckpt_rename')


def newest_iteration(folder):
    """The iteration of the newest complete checkpoint, None without one."""
    found = checkpoint_folders(folder)
    return checkpoint_iteration(found[-1]) if found else None


def finish(config, archive, folder, reference):
    """Run the job to its end (resuming when a checkpoint exists) and compare with the reference."""
    res = run_cli(config.program, config.argv(archive, folder, resume=bool(checkpoint_folders(folder))))
    assert res.returncode == 0, res.stderr[-3000:]
    assert_identical(reference, folder, config)


# ---------------------------------------------------------------- seeded random moments

RANDOM = {'train': 4, 'search1': 4, 'search2': 5}  # kills per chain at most (a chain ends with the training)
KILLS = 10  # per job: chains are added until that many kills landed


def random_chain(config, archive, folder, rng, kills, timing, reference, tmp_path):
    """Kill one run at up to ``kills`` random moments, resuming after each; then finish it and
    compare it with the reference. Returns the number of kills that landed."""
    with tally('hard kill, random moment: ' + config.name, faults=0) as entry:
        ended = False
        for _ in range(2 * kills):
            before = newest_iteration(folder)
            if entry['faults'] == kills or before == config.total:
                break
            # most kills land after the start-up, some in it, some after the end
            left = 1 - (before or 0) / config.total
            expected = timing['built'] + (timing['total'] - timing['built']) * left
            delay = max(0.05, timing['built'] + rng.uniform(-0.3, 1.0) * (expected - timing['built']))
            cmd = [sys.executable, config.program] + config.argv(archive, folder, resume=before is not None)
            traces = checkpoint_traces(folder)
            code, out = kill_after(cmd, delay, str(tmp_path / 'out.txt'))
            if code != -9:  # the run ended before the kill
                assert code == 0, out[-3000:]
                entry['hits'].append('missed: the run had ended')
                ended = True
                break
            entry['faults'] += 1
            entry['hits'].append(what_was_hit(folder, config, out, traces))
            if checkpoint_folders(folder):
                assert_loadable(checkpoint_folders(folder)[-1])
                assert newest_iteration(folder) >= (before or 0)
        if ended:
            assert_identical(reference, folder, config)
        else:
            finish(config, archive, folder, reference)
        return entry['faults']


@pytest.mark.parametrize('name', list(RANDOM))
def test_killed_at_random_moments_and_resumed(name, archive, reference, tmp_path):
    """Chains of kills at seeded random moments until ten landed; each chain ends as the reference."""
    config, (ref, timing, _) = CONFIGS[name], reference(name)
    landed = 0
    for seed in range(10):
        rng = random.Random('{}-{}'.format(name, seed))
        landed += random_chain(config, archive, tmp_path / 'chain{}'.format(seed), rng,
                               min(RANDOM[name], KILLS - landed), timing, ref, tmp_path)
        if landed >= KILLS:
            break
    assert landed >= KILLS


# ---------------------------------------------------------------- exact places (inject.py)

# each case: the successive killed runs of one chain, each given by its faults (POINT:N:ACTION
# of inject.py, several joined by '+'); N counts the calls in that run only
EXACT = {
    'train': [  # checkpoints at iterations 0 (a new run), 3, 6, 9, 10 (epoch end), 12, 15, 18, 20;
        # 3 test batches an evaluation
        ['step:5:kill',             # inside step 5, after the backward pass, before the update
         'eval:2:kill',             # resumed from 3: the first evaluation, second test batch
         'ckpt_params:3:kill',      # resumed from 9: params.h5 of checkpoint 15 half written
         'final_params:1:kill'],    # resumed from 12: the final params.h5 half written
        ['ckpt_solver:3:kill',      # the solver states of checkpoint 6 half written
         'series:3:kill',           # resumed from 3: epoch 1 half logged
         'eval:4:kill',             # resumed from 9: the second evaluation, first batch
         'nnp:1:kill'],             # resumed from 18: model.nnp
        ['curves:1:kill',           # drawing learning_curves.png after epoch 1 (series written)
         'ckpt_state:2:kill',       # resumed from 9: state.json of checkpoint 12
         'json:1:kill'],            # resumed from 10: results.json
        ['ckpt_rename:5:kill',      # checkpoint 10 complete in its temporary folder, not renamed
         'ckpt_renamed:2:kill',     # resumed from 9: checkpoint 12 renamed, 9 not yet removed
         'ckpt_rmtree:1:partial'],  # resumed from 12: checkpoint 9 half removed
        ['accumulate:13:kill',      # after step 13
         'series_open:1:kill'],     # resumed from 12: while the first series file is reopened
        ['save:2:sigterm+ckpt_rmtree:1:partial'],  # SIGTERM, then killed while the interrupt
                                                   # checkpoint replaces checkpoint 3
    ],
    'search1': [  # checkpoints at 0 (a new run), 3, 5 (epoch end), 6, 9, 10; two solver files each
        ['step:4:kill',             # inside step 4
         'ckpt_solver:3:kill',      # resumed from 3: the first solver file of checkpoint 6
         'epoch_json:1:kill',       # resumed from 5: arch_epoch_2.json
         'plot:1:kill'],            # resumed from 9: the final cell diagrams
        ['series:4:kill',           # epoch 1 half logged
         'json:2:kill',             # resumed from 3: alphas_epoch_2.json
         'curves:1:kill',           # resumed from 9: curves of epoch 2
         'json:2:kill'],            # resumed from 9: the final alphas.json
        ['ckpt_params:3:kill',      # params.h5 of checkpoint 5
         'ckpt_rename:2:kill',      # resumed from 3: checkpoint 6 not yet renamed
         'ckpt_state:3:kill',       # resumed from 5: state.json of checkpoint 10
         'ckpt_renamed:1:kill'],    # resumed from 9: checkpoint 10 renamed, 6 not yet removed
        ['accumulate:7:kill',       # after step 7
         'series_open:3:kill',      # resumed from 6: while the third series file is reopened
         'epoch_json:2:kill'],      # resumed from 9: the final arch JSON
    ],
    'search2': [
        ['unrolled:3:kill',         # inside the first unrolled step, the weights moved to w-
         'ckpt_solver:2:kill',      # resumed from 0: the second solver file of checkpoint 3
         'epoch_json:1:kill'],      # resumed from 0: arch_epoch_1.json
        ['step:7:kill',             # inside step 7
         'series:2:kill',           # resumed from 6: epoch 2 half logged
         'json:2:kill'],            # resumed from 9: the final alphas.json
    ],
}


def _ids():
    return ['{}-{}'.format(name, '/'.join(chain)) for name, chains in EXACT.items() for chain in chains]


@pytest.mark.parametrize('name, chain', [(name, chain) for name, chains in EXACT.items() for chain in chains],
                         ids=_ids())
def test_killed_at_exact_places_and_resumed(name, chain, archive, reference, tmp_path):
    config, (ref, _, _) = CONFIGS[name], reference(name)
    folder = tmp_path / 'm'
    with tally('hard kill, exact place: ' + name, faults=len(chain)) as entry:
        for segment in chain:  # one killed run; its faults are joined by '+'
            specs = segment.split('+')
            start = newest_iteration(folder)
            res, fired = run_injected(config.script, config.argv(archive, folder, resume=start is not None), specs,
                                      log_dir=tmp_path)
            assert fired == [spec.replace(':', ' ') for spec in specs], (segment, fired, res.stderr[-3000:])
            assert res.returncode == -9, (segment, res.returncode, res.stderr[-3000:])
            point, nth, _ = specs[-1].split(':')
            entry['hits'].append(point)
            after = checkpoint_folders(folder)
            if after:
                assert_loadable(after[-1])
            if point in CHECKPOINT_WRITES:  # killed while writing a checkpoint: the previous one is the newest
                # the newest checkpoint before each checkpoint write of this run (a new run writes one at 0)
                newest = [start] + config.saves(start) if start is not None else [None, 0] + config.saves(0)
                writes = 2 if point == 'ckpt_solver' and config.script == 'search' else 1  # solver files
                previous = newest[(int(nth) - 1) // writes]
                assert newest_iteration(folder) == previous, (segment, after)
                assert os.path.isdir(os.path.join(str(folder), '.checkpoint_tmp'))
        finish(config, archive, folder, ref)


@pytest.mark.parametrize('name, fault', [('train', 'curves:1:kill'), ('search1', 'series:2:kill')])
def test_killed_at_the_first_epoch_end_when_it_is_the_first_checkpoint(name, fault, archive, reference, tmp_path):
    """With checkpoints at epoch ends only (as with the default -s 1000 and the paper's epochs of
    390 and 520 steps), a kill after the first series points were written but before the first
    epoch's checkpoint is resumed with --resume too (from the checkpoint a new run writes at 0)."""
    config = CONFIGS[name]
    folder = tmp_path / 'm'
    with tally('hard kill, exact place: ' + name, what=fault.split(':')[0]):
        res, fired = run_injected(config.script, config.argv(archive, folder, extra=['-s', '0']), [fault],
                                  log_dir=tmp_path)
        assert fired == [fault.replace(':', ' ')] and res.returncode == -9, res.stderr[-3000:]
        assert list(folder.glob('*.series.txt')) and newest_iteration(folder) == 0
        res = run_cli(config.program, config.argv(archive, folder, resume=True, extra=['-s', '0']))
        assert res.returncode == 0, res.stderr[-3000:]
        assert_identical(reference(name)[0], folder, config)
