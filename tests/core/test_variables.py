"""Settings fields read from environment variables (`core.variables`), parsed by their type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from ride_duration.core.errors import ConfigurationError
from ride_duration.core.variables import read_variables, variable, variables


@dataclass(frozen=True)
class Inner:
    depth: int = variable("DEPTH", 3, "how deep", minimum=1)


@dataclass(frozen=True)
class Example:
    name: str = variable("NAME", "x", "a name")
    count: int = variable("COUNT", 1, "how many", minimum=0)
    ratio: float | None = variable("RATIO", 0.5, "a share", maximum=1)
    flag: bool = variable("FLAG", False, "on or off")
    mode: Literal["a", "b"] = variable("MODE", "a", "which")
    parts: tuple[str, ...] = variable("PARTS", ("p",), "a list")
    optional: str | None = variable("OPTIONAL", None, "maybe")
    inner: Inner = field(default_factory=Inner)


def test_unset_and_blank_variables_keep_their_defaults():
    assert read_variables(Example, {"NAME": "  ", "COUNT": ""}) == Example()


@pytest.mark.parametrize(
    ("name", "raw", "attribute", "value"),
    [
        ("NAME", "y", "name", "y"),
        ("COUNT", " 7 ", "count", 7),
        ("RATIO", "0.25", "ratio", 0.25),
        ("RATIO", "1", "ratio", 1.0),
        ("RATIO", "0", "ratio", 0.0),
        ("RATIO", "none", "ratio", None),
        ("FLAG", "yes", "flag", True),
        ("FLAG", "0", "flag", False),
        ("MODE", "b", "mode", "b"),
        ("PARTS", "a, b,,c", "parts", ("a", "b", "c")),
        ("OPTIONAL", "set", "optional", "set"),
    ],
)
def test_a_variable_is_parsed_as_its_fields_type(name, raw, attribute, value):
    assert getattr(read_variables(Example, {name: raw}), attribute) == value


def test_a_nested_group_reads_its_own_variables():
    assert read_variables(Example, {"DEPTH": "9"}).inner.depth == 9


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("COUNT", "many", "COUNT must be a whole number, got 'many'"),
        ("COUNT", "-1", "COUNT must be at least 0, got -1"),
        ("DEPTH", "0", "DEPTH must be at least 1, got 0"),
        ("RATIO", "half", "RATIO must be a number or 'none', got 'half'"),
        ("RATIO", "-0.5", "RATIO must be 0 or more"),
        ("RATIO", "nan", "RATIO must be 0 or more"),
        ("RATIO", "2", "RATIO must be at most 1, got '2'"),
        ("RATIO", "1.0001", "RATIO must be at most 1, got '1.0001'"),
        ("RATIO", "inf", "RATIO must be at most 1, got 'inf'"),
        ("FLAG", "maybe", "FLAG must be True or False, got 'maybe'"),
        ("MODE", "c", "MODE must be 'a' or 'b', got 'c'"),
    ],
)
def test_a_value_that_does_not_parse_is_one_line_naming_its_variable(name, raw, says):
    with pytest.raises(ConfigurationError) as caught:
        read_variables(Example, {name: raw})
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)


def test_variables_lists_every_variable_of_the_groups():
    assert list(variables(Example)) == [
        "NAME",
        "COUNT",
        "RATIO",
        "FLAG",
        "MODE",
        "PARTS",
        "OPTIONAL",
        "DEPTH",
    ]
    assert variables(Example)["COUNT"].metadata["meaning"] == "how many"
