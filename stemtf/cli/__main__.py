"""``python -m stemtf.cli``."""

from stemtf.cli import entry_point

entry_point()
