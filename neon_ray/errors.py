"""User-facing errors.

Anything a user can cause (a bad file, an unknown name, a value out of range) raises a
subclass of `NeonRayError`. The CLI prints its message and exits with status 2 without a
traceback; anything else is a bug and keeps its traceback.
"""


class NeonRayError(Exception):
    """An error caused by user input; its message names what was wrong and what was expected."""


class DataError(NeonRayError):
    """A dataset could not be found, read or used."""


class CheckpointError(NeonRayError):
    """A saved network is missing, corrupted, or not a neon-ray network."""


class ConfigError(NeonRayError):
    """A configuration value is invalid."""
