"""From trial records to figures.

    frames      records (through bench.store's loader) -> one row per trial, cases, aggregates
    validity    which trials' figures count: failed, saturated client, errors; their markers
    sweeps      open-loop sweeps: p99 against offered load, the highest rate within the SLO
    verdicts    the best model per case or sweep, and the ties inside the noise
    histograms  the swarm's HdrHistograms decoded in their unit, merged, as percentile curves
"""
