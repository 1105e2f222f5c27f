"""The exceptions stemtf raises for problems a user can fix.

Every message is one line that names what was wrong and how to fix it. A message that names an
option writes ``{option:KEYWORD}`` where its name goes: ``str(error)`` shows the library's keyword
(`` `overwrite` ``), :meth:`StemtfError.for_cli` the command-line flag (``--overwrite``), which is
what the CLI prints.
"""

import re

# ``{option}`` (an OptionError's own option) or ``{option:KEYWORD}`` (any option) in a message.
_OPTION_FIELD = re.compile(r"\{option(?::(\w+))?\}")


class StemtfError(Exception):
    """Base class of every error stemtf raises on purpose.

    A one-argument message may name options as ``{option:KEYWORD}`` (nothing else in it is a field;
    other braces are left as they are): ``str(error)`` names them `` `KEYWORD` ``, :meth:`for_cli` by
    their flags. A message without such fields is kept as it is.
    """

    keyword: str | None = None
    template: str | None = None

    def __init__(self, *args) -> None:
        if len(args) == 1 and isinstance(args[0], str) and _OPTION_FIELD.search(args[0]):
            self.template = args[0]
            args = (self.render(lambda name: f"`{name}`"),)
        super().__init__(*args)

    def render(self, name_of) -> str:
        """The message with each option named by ``name_of(keyword)`` (e.g. a web API's field names)."""

        def field(match: re.Match) -> str:
            keyword = match.group(1) or self.keyword
            return name_of(keyword) if keyword else match.group(0)

        return _OPTION_FIELD.sub(field, self.template)

    def for_cli(self) -> str:
        """The message with every option named by its command-line flag (:meth:`OptionError.flag_of`)."""
        return self.render(OptionError.flag_of) if self.template is not None else str(self)


class ConfigError(StemtfError):
    """A configuration file or value is invalid."""


class ModelError(StemtfError):
    """A model cannot be found, loaded or built."""


class AudioError(StemtfError):
    """An audio file cannot be read or written, or a waveform is not usable."""


class OutputError(StemtfError):
    """An output cannot be written (exists, unwritable, bad name template)."""


def install_hint(extra: str) -> str:
    """The pip command that adds ``extra`` to this stemtf install, run from the stemtf folder.

    An editable install (``make demo``, ``pip install -e .``) stays editable: ``pip install -e
    ".[extra]"``; a plain ``pip install ".[extra]"`` would replace it with a copy.
    """
    import json
    from importlib import metadata

    try:
        direct_url = json.loads(metadata.distribution("stemtf").read_text("direct_url.json") or "{}")
        editable = bool(direct_url.get("dir_info", {}).get("editable"))
    except (metadata.PackageNotFoundError, ValueError, AttributeError):
        editable = False
    return f'pip install {"-e " if editable else ""}".[{extra}]"'


class DependencyError(StemtfError, ImportError):
    """An optional package is not installed; the message names the extra that installs it.

    Args:
        what: What needs it, as the start of a sentence ("Evaluation").
        package: The missing package(s), as people know them ("museval").
        extra: The stemtf extra that installs it (``eval``, ``serve``, ...).
    """

    def __init__(self, what: str, package: str, extra: str) -> None:
        # stemtf is not on a package index: the hint installs the extra from the clone.
        super().__init__(
            f"{what} needs {package}, which is not installed: from the stemtf folder run {install_hint(extra)} "
            "(make test installs every extra)."
        )
        self.extra = extra


class DataError(StemtfError):
    """Training or evaluation data is missing, inconsistent or badly laid out."""


class SpleeterCheckpointError(ModelError):
    """A Spleeter checkpoint is unreadable or does not match the model it is read as."""


class SpleeterDownloadError(StemtfError):
    """A Spleeter release archive could not be downloaded or verified."""


class MissingExtraError(StemtfError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class ClusterError(StemtfError):
    """Training on several workers cannot start (``TF_CONFIG``) or lost a worker."""


class OptionError(StemtfError, ValueError):
    """An invalid option value; the message names the option as a Python keyword or, for the CLI, as a flag.

    Args:
        keyword: The Python keyword of the option (``overlap``, ``wiener_iterations``, ...).
        message: The message, with ``{option}`` where the option's name goes and ``{option:KEYWORD}``
            where another option's does (nothing else in it is a field).
    """

    # Flags that are not the kebab-case of their keyword.
    FLAGS = {"fmt": "--format", "from_model": "--from", "names": "--track", "groups": "--group", "stem_weights": "--stem-weight",
             "sample_rate": "--rate", "num_channels": "--channels", "stem_groups": "--stem-group",
             "max_queue": "--queue-length", "quota_mb": "--cache-quota-mb", "allow_origins": "--allow-origin",
             "targets": "--teacher-targets"}  # distill()'s teacher targets

    def __init__(self, keyword: str, message: str) -> None:
        self.keyword = keyword
        self.template = message
        super().__init__(self.render(lambda name: f"`{name}`"))

    @classmethod
    def flag_of(cls, keyword: str) -> str:
        """The command-line flag of a keyword (the kebab-case of it, but for :attr:`FLAGS`)."""
        return cls.FLAGS.get(keyword, "--" + keyword.replace("_", "-"))

    @property
    def flag(self) -> str:
        """The command-line flag of the option."""
        return self.flag_of(self.keyword)


class ModelOptionError(OptionError, ModelError):
    """An option that asks for a model or runtime this installation cannot give."""


class AudioOptionError(OptionError, AudioError):
    """An invalid option about the audio read (offset, duration)."""


class OutputOptionError(OptionError, OutputError):
    """An invalid option about the files written (format, bit depth, bitrate, file name template)."""
