"""The one exception type that reaches the user as a one-line message."""


class MTError(Exception):
    """A problem the user can fix: the message names the problem and the fix.

    The CLI prints it as ``error: <message>`` and exits with status 2, without a
    traceback; every other exception is a bug and keeps its traceback.
    """


class ConfigError(MTError):
    """A configuration value that cannot work."""


class DataError(MTError):
    """Input data that cannot be read or does not fit together."""
