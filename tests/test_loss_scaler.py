"""The dynamic loss scaling of --type-config half, on the CPU with injected overflows: a parameter
whose unscaled gradient has magnitude ``g`` gets g * scale, or inf where that exceeds the largest
half (what a half backward would give)."""
import numpy as np
import nnabla as nn
import nnabla.solvers as S
import pytest

from numerics import HALF_MAX, LossScaler


def run(scaler, g, steps):
    """Steps of unscale() on gradients of magnitude ``g``: (skipped flags, scales after each)."""
    p = nn.Variable((3,), need_grad=True)
    solver = S.Sgd(0.0)
    solver.set_parameters({'p': p})
    skipped, scales = [], []
    for _ in range(steps):
        scaled = np.full(3, g * scaler.scale)
        if g * scaler.scale > HALF_MAX:
            scaled[1] = np.inf
        p.g = scaled
        ok = scaler.unscale(solver)
        if ok:
            np.testing.assert_allclose(p.g, g, rtol=1e-6)
        skipped.append(not ok)
        scales.append(scaler.scale)
    return skipped, scales


def test_an_overflow_at_the_start_costs_a_few_skipped_steps():
    """Gradients up to 2000 (they overflow at any scale above 2^5) skip only the first 3 steps."""
    skipped, scales = run(LossScaler(True), 2000.0, 50)
    assert skipped[:4] == [True, True, True, False] and not any(skipped[4:])
    assert scales[2] == 2.0 ** 5


def test_the_scale_grows_to_its_cap_and_stays_without_overflow():
    skipped, scales = run(LossScaler(True), 0.5, 2000)
    assert not any(skipped)
    assert scales[199] == 2.0 ** 9 and scales[1599] == 2.0 ** 16 and scales[-1] == 2.0 ** 16


@pytest.mark.parametrize('g', [1e-3, 3.0, 2000.0])
def test_once_settled_at_most_one_step_in_200_is_skipped(g):
    skipped, _ = run(LossScaler(True), g, 4000)
    assert sum(skipped[2000:]) <= 2000 // 200


def test_float_is_not_scaled():
    scaler = LossScaler(False)
    skipped, scales = run(scaler, 3.0, 3)  # gradients untouched (checked in run)
    assert not any(skipped) and scales == [1.0] * 3
