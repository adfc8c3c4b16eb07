"""What the three scripts share, one job per module: settings, client_health, commits,
at_least_once and lifecycle (README.md, "Layout", says what each holds)."""
