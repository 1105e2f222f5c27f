"""Stem groups as the web APIs take them: the fields ``group`` (``NAME=STEM,STEM``, repeatable) and ``two_stems`` (``STEM``).

They are checked as ``stemtf separate --group/--two-stems`` and ``Separator.separate(groups=...)``
check them (:func:`stemtf.options.parse_groups`, :func:`stemtf.options.check_groups`); here the
messages name the options as the web API's fields, and a group's name must also make a safe
download name (:func:`stemtf.serve.names.group_name_problem`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from stemtf import options
from stemtf.errors import OptionError
from stemtf.serve.names import group_name_problem

# The web API's field for each keyword the group checks name.
FIELDS = {"groups": "group", "group": "group", "two_stems": "two_stems"}


class GroupsProblem(ValueError):
    """Bad ``group`` or ``two_stems`` fields; the message names the fields (the routes answer it as a 400)."""


def field_name(keyword: str) -> str:
    """The web API's name of an option that a group check names (``groups`` -> ``group``)."""
    return FIELDS.get(keyword, keyword)


def parse_fields(values: Sequence[Any], two_stems: Any) -> dict[str, list[str]] | None:
    """Groups from the fields ``group`` (``values``) and ``two_stems`` (None or ``""`` when not given).

    Raises:
        GroupsProblem: a field that is not text, or a malformed group.
    """
    if any(not isinstance(value, str) for value in values) or (two_stems is not None and not isinstance(two_stems, str)):
        raise GroupsProblem("The fields 'group' and 'two_stems' must be text, e.g. group=accompaniment=drums,bass,other.")
    try:
        groups = options.parse_groups([value for value in values if value], two_stems=two_stems or None)
    except OptionError as error:
        raise GroupsProblem(error.render(field_name)) from None
    if (problem := group_name_problem(groups)) is not None:
        raise GroupsProblem(problem)
    return groups


def check_fields(groups: Mapping[str, list[str]] | None, stems: Sequence[str]) -> list[tuple[str, tuple[int, ...]]] | None:
    """The output stems of ``groups`` for a model with ``stems`` (see :func:`stemtf.options.check_groups`).

    Raises:
        GroupsProblem: an unknown stem, a stem in two groups, a group name that cannot name a file.
    """
    try:
        plan = options.check_groups(groups, stems)
    except OptionError as error:
        raise GroupsProblem(error.render(field_name)) from None
    if (problem := group_name_problem(groups)) is not None:
        raise GroupsProblem(problem)
    return plan
