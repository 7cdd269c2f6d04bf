"""Running many runs: sweeps (`hyper`), paper tables, run budgets, side-by-side step
timing, and their reports."""
