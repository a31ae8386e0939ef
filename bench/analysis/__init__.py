"""From trial records to figures: frames, validity, verdicts, sweeps and histograms."""
