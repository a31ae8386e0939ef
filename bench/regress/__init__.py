"""The performance-regression gate: head against a base revision, side by side, for CI."""
