"""Running a scenario: load and expand it, plan the trials, run each one, record it."""
