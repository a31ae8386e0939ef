"""From trial records to figures.

    frames      records (through bench.store's loader) -> one row per trial, cases, aggregates
    validity    which figures of a trial count, per metric: failed, saturated client, errors,
                queueing by design; their markers
    intervals   bootstrap intervals on ratios of medians
    sweeps      open-loop sweeps: p99 against offered load, the highest rate within the SLO
                (relative to each model's unloaded p50 by default)
    verdicts    the best model per case, equal-load case or sweep, and its ties by interval
    scorecard   workloads (cases by what they ask), the scorecard, the sentences, how sure
    histograms  the swarm's HdrHistograms decoded in their unit, merged, as percentile curves
"""
