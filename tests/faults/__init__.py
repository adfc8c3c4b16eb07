"""Fault-injection scenarios (``pytest -m faults``); RELIABILITY.md lists what they prove."""
