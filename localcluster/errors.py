"""The one error type the command turns into a clear message and a non-zero exit."""


class ClusterError(Exception):
    """Something the user can act on: the message says what went wrong and where."""
