"""Collapse remedies and pictures: DARTS-ES's rule, P-DARTS's skip cap, the parameter-free op
counts, alphas.png and the evolution of the weights, the derive command."""
import json

import numpy as np
import pytest

import early_stop
import genotype
import plots
from errors import UserError
from spaces.darts_cnn import DartsCnn
from spaces.darts_cnn import arch as darts_arch

PNG = b'\x89PNG\r\n\x1a\n'


def test_local_averages_follow_robustdarts_window():
    values = [1, 2, 3, 4, 5, 6, 7]
    # from the 3rd value on: the mean of all values while fewer than 5, then of the last 5
    assert early_stop.local_averages(values) == [2.0, 2.5, 3.0, 4.0, 5.0]


def scripted(jump_at, epochs, every=1, low=1.0, high=2.0):
    return [(e, high if e >= jump_at else low) for e in range(0, epochs, every)]


def first_stop(history, every=1, **rule):
    """The first evaluation at which decide() stops, as (current epoch, decision)."""
    for n in range(1, len(history) + 1):
        decision = early_stop.decide(history[:n], every, **rule)
        if decision:
            return history[n - 1][0], decision
    return None


def test_early_stop_on_a_scripted_eigenvalue_sequence():
    # a flat eigenvalue never stops the search
    assert first_stop(scripted(jump_at=100, epochs=50)) is None
    # a doubling at epoch 15: at epoch 16 the window 12..16 averages 1.4 against 1.0 for the window
    # 8..12, centred 4 epochs earlier (epoch 10): 1.4 > 1.3, epoch 10's arch is kept
    epoch, (kept, ratio) = first_stop(scripted(jump_at=15, epochs=50))
    assert (epoch, kept) == (16, 10) and ratio == pytest.approx(1.4)
    # a rise too early: the earlier epoch must be at least 10, so epoch 16 is the first to decide,
    # when both windows already contain the jump (ratio 1.0 < 1.3 onwards): never stops
    assert first_stop(scripted(jump_at=3, epochs=50)) is None
    # a smaller rise (1.2x) stays under the factor
    assert first_stop(scripted(jump_at=15, epochs=50, high=1.2)) is None
    # every 2 epochs: the centre is 4 epochs back, the earlier one 8 more; epoch 10 needs epoch 22
    epoch, (kept, ratio) = first_stop(scripted(jump_at=20, epochs=50, every=2), every=2)
    assert (epoch, kept) == (22, 10) and ratio == pytest.approx(1.4)


def hand_made_alphas():
    """The five edges of 5-node cells, identity strong on four of them (softmax weights noted)."""
    a = np.zeros((5, 8))
    a[0, [6, 2]] = 5, 2      # 0->2: identity 0.92
    a[1, [6, 0]] = 4, 1      # 1->2: identity 0.86
    a[2, [6, 3]] = 3, 2.5    # 0->3: identity 0.52, then sep_conv_5x5 0.32
    a[3, [6, 5]] = 2.5, 0.2  # 1->3: identity 0.63, then avg_pool 0.06
    a[4, 1] = 3.2            # 2->3: dil_conv_5x5 0.78
    return a


@pytest.mark.parametrize('cap, normal', [
    (None, {'2': [[6, 0], [6, 1]], '3': [[1, 2], [6, 1]]}),
    (3, {'2': [[6, 0], [6, 1]], '3': [[1, 2], [6, 1]]}),
    # 1->3's identity goes first (weakest): node 3 is ranked again and takes 0->3's identity;
    # that one goes next and 0->3 keeps its sep_conv_5x5
    (2, {'2': [[6, 0], [6, 1]], '3': [[1, 2], [3, 0]]}),
    (0, {'2': [[2, 0], [0, 1]], '3': [[1, 2], [3, 0]]}),
])
def test_skip_cap_keeps_the_strongest_identities(cap, normal):
    a = hand_made_alphas()
    arch = darts_arch.derive(a, a.copy(), 5, max_skip_connect=cap)
    assert arch['arch_normal'] == normal
    assert arch['arch_reduction'] == {'2': [[6, 0], [6, 1]], '3': [[1, 2], [6, 1]]}  # never capped
    skips = sum(op == 6 for pairs in arch['arch_normal'].values() for op, _ in pairs)
    assert skips <= (cap if cap is not None else 8)


def test_parameter_free_counts():
    arch = {'arch_normal': {'2': [[6, 0], [4, 1]], '3': [[5, 2], [2, 0]]},
            'arch_reduction': {'2': [[0, 0], [1, 1]], '3': [[3, 2], [6, 0]]}}
    assert darts_arch.parameter_free(arch) == {'arch_normal': 3, 'arch_reduction': 1}


def test_derive_command_writes_the_arch_of_an_alphas_file(tmp_path, capsys):
    a = hand_made_alphas()
    path = tmp_path / 'alphas.json'
    path.write_text(json.dumps({'alpha_normal': a.tolist(), 'alpha_reduction': a.tolist()}))
    out = tmp_path / 'arch.json'
    assert genotype.main(['derive', str(path), '--out', str(out), '--max-skip-connect', '2', '--num-nodes', '5']) == 0
    arch = json.loads(out.read_text())
    assert arch == darts_arch.derive(a, a, 5, 2) and 'architecture written to' in capsys.readouterr().out
    with pytest.raises(UserError, match='alpha_normal must be 14x8'):
        genotype.main(['derive', str(path), '--out', str(tmp_path / 'x.json')])
    path.write_text('{"alpha_normal": 1}')
    with pytest.raises(UserError, match='is not an alphas file'):
        genotype.main(['derive', str(path), '--out', str(tmp_path / 'x.json'), '--num-nodes', '5'])


def test_alpha_pictures_are_written_and_differ_with_the_alphas(tmp_path):
    rng = np.random.RandomState(0)
    pictures = []
    for k in range(2):
        w = {'normal': darts_arch.softmax_weights(rng.randn(14, 8)), 'reduction': darts_arch.softmax_weights(rng.randn(14, 8))}
        path = tmp_path / 'alphas{}.png'.format(k)
        plots.alpha_weights(w, darts_arch.edges(7), DartsCnn.op_labels, str(path), 'epoch 1')
        pictures.append(path.read_bytes())
    assert all(p[:8] == PNG for p in pictures) and pictures[0] != pictures[1]


def test_evolution_command_draws_the_epoch_files(tmp_path, capsys):
    rng = np.random.RandomState(1)
    pictures = []
    for run in ('a', 'b'):
        folder = tmp_path / run
        folder.mkdir()
        for epoch in (1, 2, 3):
            (folder / 'alphas_epoch_{}.json'.format(epoch)).write_text(json.dumps(
                {'alpha_normal': rng.randn(5, 8).tolist(), 'alpha_reduction': rng.randn(5, 8).tolist()}))
        out = tmp_path / '{}.png'.format(run)
        assert genotype.main(['evolution', str(folder), '--out', str(out)]) == 0
        pictures.append(out.read_bytes())
    assert all(p[:8] == PNG for p in pictures) and pictures[0] != pictures[1]
    assert '(3 epochs)' in capsys.readouterr().out
    with pytest.raises(UserError, match='no alphas_epoch_N.json'):
        genotype.main(['evolution', str(tmp_path), '--out', str(tmp_path / 'c.png')])
