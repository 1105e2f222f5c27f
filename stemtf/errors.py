"""The exceptions stemtf raises for problems a user can fix.

Every message is one line that names what was wrong and how to fix it; the CLI prints it as is.
"""


class StemtfError(Exception):
    """Base class of every error stemtf raises on purpose."""


class ConfigError(StemtfError):
    """A configuration file or value is invalid."""


class ModelError(StemtfError):
    """A model cannot be found, loaded or built."""


class AudioError(StemtfError):
    """An audio file cannot be read or written, or a waveform is not usable."""


class OutputError(StemtfError):
    """An output cannot be written (exists, unwritable, bad name template)."""


class DataError(StemtfError):
    """Training or evaluation data is missing, inconsistent or badly laid out."""
