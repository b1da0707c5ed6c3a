"""Errors a user can act on. The CLI prints them as one line, without a traceback."""


class SceneparseError(Exception):
    """Base class: the message says what is wrong, where (file or key) and what to do."""


class ConfigError(SceneparseError, ValueError):
    """A preset or TOML file that does not fit the config schema."""


class DataError(SceneparseError, ValueError):
    """A dataset file that is missing, unreadable or inconsistent."""


class CheckpointError(SceneparseError, ValueError):
    """A weights file that cannot be read safely or does not fit the model."""
