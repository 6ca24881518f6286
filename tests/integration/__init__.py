"""Integration tier: our CLIs (``run.py``, ``python -m cmt.results``), the test server and other processes,
started for real on this machine (loopback only). A file named like one in tests/unit tests the same module.

A package, so that a file here and its namesake in tests/unit import under different module names.
"""
