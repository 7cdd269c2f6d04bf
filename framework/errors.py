"""The error every part of the framework raises for bad user input."""


class ConfigError(ValueError):
    """A bad config, override, workdir or data set, reported as one line before compiling.

    The launch commands print it as `error: <message>` on stderr and exit with status 2.
    """


class DataError(RuntimeError):
    """Bad data met while reading it, e.g. an undecodable image.

    The message names the file or record, so that the bad one can be found and removed.
    """


class RunError(RuntimeError):
    """A run that started but cannot go on, e.g. a loss that became NaN/inf.

    The message names what happened and what the workdir keeps (the last good
    checkpoint). The launch commands print it as `error: <message>` on stderr and exit
    with status 1.
    """
