"""Exceptions whose messages are meant for the user: they name the file/key, the bad value and what is allowed."""


class JetscaleError(Exception):
    """Base class: the CLI prints these without a traceback."""


class ConfigError(JetscaleError):
    """A study configuration is invalid (names the key)."""


class DataError(JetscaleError):
    """An input data file is missing, corrupt or inconsistent (names the file)."""


class TrainingError(JetscaleError):
    """A training run failed for a recorded reason (e.g. non-finite loss)."""
