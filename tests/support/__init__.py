"""What several test packages share: the apps as processes, the Java witness, waits, figures.

Imported as ``support`` from tests/, as ``faults`` and ``compose_live`` are (pytest puts
tests/, the folder of the top conftest.py, which is in no package, on sys.path).
"""
