"""The verdicts' error rate, simulated: under the null (every model the same) a run must show a
false "clear" winner at most 5 % of the time, whatever the machine's drift between rounds; with
a real effect it must find it.

The simulated run is the default scenario's design: nine interleaved rounds, eight verdicts,
each round's figures sharing the round's drift (a machine that runs 3x slower one minute than
the next) and each model its own noise, including heavy tails.
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.analysis import verdicts

ROUNDS = 9
VERDICTS = 8
RUNS = 100


def simulated_run(rng: np.random.Generator, models: int, effect: float = 1.0,
                  tails: bool = False) -> list[verdicts.CaseVerdict]:
    """One run's verdicts: model 0 is ``effect`` times faster than the others (1: none)."""
    made = []
    for case in range(VERDICTS):
        drift = np.exp(rng.normal(0, 0.3, ROUNDS))  # the machine, round by round
        noise = rng.standard_t(2, (models, ROUNDS)) if tails else rng.normal(0, 1, (models,
                                                                                    ROUNDS))
        figures = 1000 * drift * np.exp(0.05 * noise)
        figures[0] *= effect
        samples = {f"m{i}": figures[i].tolist() for i in range(models)}
        made.append(verdicts.verdict_of(f"c{case}", "g", "throughput", "throughput_rps",
                                        "higher", samples, verdicts.DEFAULT_MARGIN, 0))
    verdicts.settle(made)
    return made


def false_clear_rate(models: int, tails: bool, runs: int = RUNS, seed: int = 1) -> float:
    """The share of null runs with at least one 'clear' verdict."""
    rng = np.random.default_rng(seed)
    hits = sum(any(v.outcome == "clear" for v in simulated_run(rng, models, tails=tails))
               for _ in range(runs))
    return hits / runs


@pytest.mark.parametrize("models", [2, 5, 11])  # two: where picking the leader matters most
@pytest.mark.parametrize("tails", [False, True])
def test_under_the_null_a_false_clear_winner_is_rare(models: int, tails: bool) -> None:
    assert false_clear_rate(models, tails) <= 0.05


def test_a_real_effect_is_found() -> None:
    """A leader 30 % ahead of ten others, with the same drift and noise, is called clear in
    nearly every verdict (the test is not so strict that it can call nothing)."""
    rng = np.random.default_rng(2)
    outcomes = [v.outcome for _ in range(20) for v in simulated_run(rng, 11, effect=1.3)]
    assert outcomes.count("clear") / len(outcomes) >= 0.8


def test_the_cached_exact_p_is_scipys() -> None:
    """significance.signed_rank_p caches the tie-free exact p by (n, W+): it equals scipy's on
    the data itself, ties included."""
    from scipy import stats

    from bench.analysis.significance import signed_rank_p

    rng = np.random.default_rng(3)
    for _ in range(300):
        pairs = int(rng.integers(2, 13))
        diffs = rng.normal(0.3, 1.0, pairs).round(int(rng.integers(0, 3))).tolist()
        if not any(diffs):
            continue
        for alternative in ("two-sided", "greater"):
            expected = stats.wilcoxon([d for d in diffs if d], alternative=alternative,
                                      method="exact").pvalue
            assert signed_rank_p(diffs, alternative) == pytest.approx(expected, abs=1e-12)
