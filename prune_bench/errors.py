"""Errors a user can fix. The CLI prints them as one line each and exits with status 2."""


class PruneBenchError(Exception):
    """Base class: the message names the config key (or file) and what is allowed."""


class ConfigError(PruneBenchError):
    pass


class DataError(PruneBenchError):
    pass


class CheckpointError(PruneBenchError):
    pass
