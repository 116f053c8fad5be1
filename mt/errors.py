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


class WriteError(MTError):
    """A file could not be written (a full disk, a read-only folder, a quota)."""


# What torch's serializer raises when the disk fills under it (no errno to read).
_TORCH_WRITE_FAILURES = ("inline_container", "iostream error", "PytorchStreamWriter", "file write failed")


def write_failure(err: BaseException) -> str | None:
    """Why ``err`` is a failed write, in a few words, or None when it is something else (a
    bug keeps its traceback)."""
    import errno
    import os

    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                                                  errno.EFBIG):
        return os.strerror(err.errno).lower()
    text = str(err)
    if isinstance(err, RuntimeError) and any(mark in text for mark in _TORCH_WRITE_FAILURES):
        return "the write failed (a full disk?)"
    if isinstance(err, OSError) and "No space left" in text:
        return "no space left on device"
    return None
