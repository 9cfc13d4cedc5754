"""Errors of the model package, kept apart so low-level modules (conversion, checkpoint I/O) share them without
importing each other."""


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model; the message names the file."""
