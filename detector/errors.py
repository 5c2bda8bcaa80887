"""The base of every error a user is meant to read (the CLI prints it without a traceback)."""


class CueLensError(Exception):
    """An error with a message a user can act on: what failed, on which file, what to do."""
