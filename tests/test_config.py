"""The evaluation schedule: every `eval_every` steps and after the last, a short last interval folded."""

import pytest

from bench.config import evaluation_steps


def test_the_studys_schedule_folds_its_short_remainder():
    # 15625 = 4·3906 + 1: the 1 step left over joins the last interval instead of a fifth point.
    assert evaluation_steps(15625, 3906) == [3906, 7812, 11718, 15625]
    assert evaluation_steps(9, 4) == [4, 9]  # remainder 1 < 4/2
    assert evaluation_steps(10, 3) == [3, 6, 10]  # remainder 1 < 1.5


@pytest.mark.parametrize("steps, every, expected", [
    (10, 4, [4, 8, 10]),  # remainder 2 = half an interval: not shorter, so a point of its own
    (11, 4, [4, 8, 11]),  # remainder 3
    (14, 8, [8, 14]),  # remainder 6 >= 4
])
def test_a_remainder_of_half_an_interval_or_more_adds_a_point(steps, every, expected):
    assert evaluation_steps(steps, every) == expected


@pytest.mark.parametrize("steps, every, expected", [
    (12, 4, [4, 8, 12]), (5, 5, [5]), (78125, 15625, [15625, 31250, 46875, 62500, 78125])])
def test_exact_multiples_end_on_the_last_step(steps, every, expected):
    assert evaluation_steps(steps, every) == expected


@pytest.mark.parametrize("steps, every", [(3, 5), (1, 1000), (30, 31)])
def test_an_interval_longer_than_the_trial_evaluates_once_at_the_end(steps, every):
    assert evaluation_steps(steps, every) == [steps]
