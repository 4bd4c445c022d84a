"""The few exceptions genforge raises on purpose.

Each message names the file, field or key at fault and what was expected; the CLI prints the
message alone (no traceback) and exits non-zero.
"""


class GenforgeError(Exception):
    """Base class: an error the user can act on."""


class ConfigError(GenforgeError):
    """A config key is unknown, has the wrong type, or an invalid value."""


class DataError(GenforgeError):
    """Input data is missing, empty, malformed, or inconsistent with its manifest."""


class CheckpointError(GenforgeError):
    """A checkpoint is missing, corrupted, incomplete, or not in the safetensors format."""


class Interrupted(Exception):
    """Training stopped on SIGTERM or SIGINT once it had saved a checkpoint. Not an error: the CLI
    prints the message (where it saved) and exits with `status`, 0 for SIGTERM (a scheduler's
    request to stop) and 130 for SIGINT (Ctrl-C)."""

    def __init__(self, message: str, status: int, checkpoint):
        super().__init__(message)
        self.status, self.checkpoint = status, checkpoint
