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
