"""The USL fit against a published dataset, a synthetic one, and a run folder.

Published: the R ``usl`` package's ``raytracer`` dataset (Gunther, Guerrilla Capacity
Planning, 2007: ray-geometry intersections per second on an SGI Origin 2000, 1 to 64 CPUs).
The package's own test output (smoeding/usl, tests/confint.Rout.save: ``usl(throughput ~
processors, data = raytracer)``) gives σ (its "alpha") 0.0578, κ ("beta") 0.0000 and λ
("gamma") 21.8488, with 95 % intervals σ [0.0337, 0.0819], κ [−0.000214, 0.000214]. R
computes its intervals with another variance estimate, so here the intervals need only hold
the published coefficients and overlap R's.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from _helpers_report import make_trial, write_run

from bench.analysis import usl
from bench.analysis.frames import load_run

RAYTRACER_N = [1, 4, 8, 12, 16, 20, 24, 28, 32, 48, 64]
RAYTRACER_X = [20, 78, 130, 170, 190, 200, 210, 230, 260, 280, 310]


def test_raytracer_matches_the_r_usl_package() -> None:
    result = usl.fit(RAYTRACER_N, RAYTRACER_X)
    assert result.valid
    assert result.sigma == pytest.approx(0.0578, abs=5e-5)
    assert result.kappa == pytest.approx(0.0, abs=1e-6)
    assert result.lam == pytest.approx(21.8488, abs=5e-4)
    assert result.sigma_ci[0] < 0.0578 < result.sigma_ci[1]
    assert result.sigma_ci[0] < 0.0819 and result.sigma_ci[1] > 0.0337  # overlaps R's
    assert result.kappa_ci[0] == 0.0 and result.kappa_ci[1] > 0.0  # clipped at the bound
    assert result.r2 > 0.95
    assert math.isinf(result.n_star)  # κ = 0: throughput only flattens, towards λ/σ
    assert result.x_star == pytest.approx(21.8488 / 0.0578, rel=2e-3)


def test_known_coefficients_are_recovered_with_their_peak() -> None:
    n = np.array([1, 2, 4, 8, 16, 32, 64, 128], dtype=float)
    lam, sigma, kappa = 10_000.0, 0.05, 0.001
    noise = 1 + 0.005 * np.sin(np.arange(len(n)) * 2.3)  # ±0.5 %, deterministic
    result = usl.fit(n, usl.usl(n, lam, sigma, kappa) * noise)
    assert result.sigma == pytest.approx(sigma, rel=0.1)
    assert result.kappa == pytest.approx(kappa, rel=0.1)
    assert result.sigma_ci[0] <= sigma <= result.sigma_ci[1]
    assert result.kappa_ci[0] <= kappa <= result.kappa_ci[1]
    assert result.n_star == pytest.approx(math.sqrt((1 - sigma) / kappa), rel=0.1)
    peak = float(usl.usl(np.array(result.n_star), lam, sigma, kappa))
    assert result.x_star == pytest.approx(peak, rel=0.02)


def test_too_few_levels_is_not_reported() -> None:
    result = usl.fit([1, 2, 4, 8, 16], [1, 2, 3.5, 6, 9])
    assert not result.valid and "5 valid connection levels" in result.reason
    assert math.isnan(result.n_star)


def test_a_run_folder_is_fitted_per_model_from_valid_trials(tmp_path: Path) -> None:
    levels = [1, 2, 4, 8, 16, 32, 64, 128]
    records = []
    for model, (lam, sigma, kappa) in {"epoll": (9000.0, 0.03, 0.0005),
                                       "threaded": (8000.0, 0.2, 0.002)}.items():
        for c in levels:
            x = float(usl.usl(np.array(c, dtype=float), lam, sigma, kappa))
            records.append(make_trial(f"echo64-c{c}-closed", "scaling", model, 0, c, x,
                                      p50_us=1e6 * c / x, seed=c))
    # a saturated trial at 128 is left out: threaded keeps 7 levels, still enough
    records[-1] = make_trial("echo64-c128-closed", "scaling", "threaded", 0, 128, 1e9,
                             saturated=True)
    run = load_run(write_run(tmp_path / "run", records, {"name": "scaling"}))
    fits = {f.variant: f for f in usl.run_fits(run)}
    assert set(fits) == {"epoll", "threaded"}
    assert fits["epoll"].levels == tuple(levels) and fits["threaded"].levels == tuple(levels[:-1])
    assert fits["epoll"].sigma == pytest.approx(0.03, rel=0.02)
    assert fits["threaded"].kappa == pytest.approx(0.002, rel=0.02)
    table = usl.fits_table(list(fits.values()))
    assert list(table["reported"]) == [True, True]


def test_the_report_has_a_usl_section_and_chart(tmp_path: Path) -> None:
    from bench.report.document import build_report

    records = []
    for c in [1, 2, 4, 8, 16, 32, 64, 128]:
        x = float(usl.usl(np.array(c, dtype=float), 9000.0, 0.03, 0.0005))
        records.append(make_trial(f"echo64-c{c}-closed", "scaling", "epoll", 0, c, x,
                                  p50_us=1e6 * c / x, seed=c))
    report = build_report(write_run(tmp_path / "run", records, {"name": "scaling"}))
    text = report.paths["markdown"].read_text()
    assert "## Scalability (USL)" in text and "0.0300 [" in text
    assert (report.run.run_dir / "charts" / "usl_fit.png").exists()
