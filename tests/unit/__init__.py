"""Unit tier: in-process tests that start no subprocess, server or CLI (those are in tests/integration).

A package, so that a file here and its namesake in tests/integration import under different module names.
"""
