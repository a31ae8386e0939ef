"""Latency spectra: the swarm's encoded HdrHistograms, decoded in their recorded unit, merged
over repetitions and walked into percentile curves; and which case the report draws."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from hdrh.histogram import HdrHistogram

from bench.analysis.frames import case_table
from bench.analysis.validity import ok_column

US_PER_UNIT = {"ns": 1e-3, "us": 1.0, "ms": 1e3}  # the swarm's ``histogram_unit`` -> µs


def decode_histogram(swarm: dict[str, Any] | None, key: str = "histogram"
                     ) -> tuple[HdrHistogram, float] | None:
    """The swarm's encoded HdrHistogram and the factor (µs per recorded value) from its
    ``histogram_unit``; None when it has none, or no data, or a unit this reader does not know
    (a spectrum in a guessed unit would be wrong by a factor of 1000)."""
    swarm = swarm or {}
    encoded, scale = swarm.get(key), US_PER_UNIT.get(swarm.get("histogram_unit"))
    if not encoded or scale is None:
        return None
    try:
        histogram = HdrHistogram.decode(encoded)
    except Exception:  # a corrupt or foreign encoding: no spectrum for this trial
        return None
    if histogram.get_total_count() == 0:
        return None
    return histogram, scale


def merged_histogram(records: list[dict[str, Any]], key: str = "histogram"
                     ) -> tuple[HdrHistogram, float] | None:
    """The repetitions' histograms added together (those in the first one's unit: values in
    different units cannot be added). ``key``: the swarm record's ``histogram`` (open loop:
    corrected for coordinated omission) or ``histogram_uncorrected``."""
    merged = None
    for record in records:
        decoded = decode_histogram(record.get("swarm"), key)
        if decoded is None:
            continue
        if merged is None:
            merged = decoded
        elif decoded[1] == merged[1]:
            merged[0].add(decoded[0])
    return merged


def percentile_curve(histogram: HdrHistogram, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(percentile fraction, latency µs) walked HdrHistogram-style, ending at the maximum."""
    total = histogram.get_total_count()
    last = 1.0 - 1.0 / total if total > 1 else 0.5  # the rarest level the data can show
    levels, values = [], []
    for item in histogram.get_percentile_iterator(5):
        level = item.percentile_level_iterated_to / 100.0
        if level >= last:
            break
        levels.append(level)
        values.append(histogram.get_highest_equivalent_value(item.value_iterated_to) * scale)
    levels.append(last)
    values.append(histogram.get_max_value() * scale)
    return np.asarray(levels), np.asarray(values)


def _recorded(histogram: HdrHistogram) -> list[tuple[int, int]]:
    """(median equivalent value, count) of every bucket that holds a value, lowest first."""
    counts = np.ctypeslib.as_array(histogram.counts)[:histogram.counts_len]
    return [(histogram._hdr_median_equiv_value(histogram.get_value_from_index(index)),
             int(counts[index])) for index in np.flatnonzero(counts).tolist()]


def _mean_and_stddev(histogram: HdrHistogram) -> tuple[float, float]:
    """hdrh's ``get_mean_value`` and ``get_stddev``, the same sums in the same order (so the
    same figures to the last bit), over the buckets that hold a value: hdrh walks every bucket
    up to the maximum in Python, three times for the two."""
    recorded = _recorded(histogram)
    total = histogram.get_total_count()
    mean = float(sum(median * count for median, count in recorded)) / total
    squares = 0.0
    for median, count in recorded:
        deviation = (median * 1.0) - mean
        squares += (deviation * deviation) * count
    return mean, math.sqrt(squares / total)


def hgrm(histogram: HdrHistogram, scale: float) -> str:
    """HdrHistogram's percentile distribution text (``.hgrm``, what its plotFiles and
    hdrplot read), values in milliseconds: what hdrh's ``output_percentile_distribution``
    writes, byte for byte (its footer's standard deviation in recorded units too), with the
    footer's mean and deviation from ``_mean_and_stddev``, most of the writer's time."""
    ratio, digits = 1000.0 / scale, histogram.significant_figures
    lines = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}\n\n"]
    for item in histogram.get_percentile_iterator(5):
        value, level = item.value_iterated_to / ratio, item.percentile_level_iterated_to
        line = f"{value:12.{digits}f} {level / 100:2.12f} {item.total_count_to_this_value:10d}"
        lines.append(f"{line} {1 / (1 - level / 100):14.2f}\n" if level != 100 else f"{line}\n")
    mean, stddev = _mean_and_stddev(histogram)
    lines.append(f"#[Mean    = {mean / ratio:12.{digits}f}, "
                 f"StdDeviation   = {stddev:12.{digits}f}]\n")
    lines.append(f"#[Max     = {histogram.get_max_value() / ratio:12.{digits}f}, "
                 f"TotalCount     = {histogram.get_total_count():12.{digits}f}]\n")
    lines.append(f"#[Buckets = {histogram.bucket_count:12d}, "
                 f"SubBuckets     = {histogram.sub_bucket_count:12d}]\n")
    return "".join(lines)


def pick_spectrum_case(frame: pd.DataFrame, requested: str | None = None) -> tuple[str | None, str]:
    """The case whose latency spectrum to draw, and a note on how it was chosen."""
    cases = case_table(frame)
    with_hist = set(frame.loc[frame[ok_column("p99_us")], "case"]) if not frame.empty else set()
    if requested:
        if requested in with_hist:
            return requested, f"chosen point: {requested}"
        note = f"requested point {requested!r} has no valid trial; "
    else:
        note = ""
    closed = cases[(cases["mode"] != "open") & cases["case"].isin(with_hist)]
    if closed.empty:
        return None, note + "no closed-loop case with valid trials"
    echo = closed[closed["group"] == "echo"]
    at_128 = echo[echo["connections"] == 128]
    if not at_128.empty:
        return str(at_128["case"].iloc[0]), note + "default point: echo at 128 connections"
    pool = echo if not echo.empty else closed
    pick = pool.sort_values("connections", ascending=False)["case"].iloc[0]
    return str(pick), note + "default point (echo at 128 connections absent): most connections"
