"""Exceptions that carry a message meant for the user (the CLI prints them and exits)."""


class EdgerfError(Exception):
    """An error the user can fix: the message says what was wrong and what to do."""

    exit_code = 2


class DataError(EdgerfError):
    """Dataset files are missing, unreadable or corrupt."""


class CheckpointError(EdgerfError):
    """A checkpoint is missing, truncated, foreign or tampered with."""


class ArtifactError(EdgerfError):
    """An exported artifact or its manifest is missing, inconsistent or unwritable."""


class ParityError(EdgerfError):
    """An exported graph does not reproduce torch within tolerance."""

    exit_code = 3


class Interrupted(EdgerfError):
    """The user stopped a command (Ctrl-C): the message says what was and was not written."""

    exit_code = 130
