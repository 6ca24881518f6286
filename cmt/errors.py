"""Errors in a user's input or setup: their message names what is wrong and how to fix it.

`run.py` prints them as one line (no traceback) in a single run; in a multirun they propagate like any
error, so the job is recorded as failed and the other jobs go on.
"""


class CmtError(Exception):
    """Base of the errors a user can fix (a missing input, a bad config value, an unreachable source)."""


class ConfigError(CmtError, ValueError):
    """A config value that is wrong: the message names the key, the value and what is allowed."""


class ModelNotFoundError(CmtError, FileNotFoundError):
    """A model could not be loaded from where the config points; the message says how to fix it."""
