from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vizcnn.core.channels import parse_channels
from vizcnn.core.errors import VizError


@given(st.integers(1, 80), st.integers(0, 90), st.integers(0, 90), st.integers(1, 5))
def test_slices_match_python_slicing(count: int, start: int, stop: int, step: int) -> None:
    expected = tuple(range(count)[start:stop:step])
    text = f"{start}:{stop}:{step}"
    if not expected:
        with pytest.raises(VizError):
            parse_channels(text, count, clip_slices=True)
        return
    assert parse_channels(text, count, clip_slices=True) == expected
    if stop > count:
        with pytest.raises(VizError, match="do not fit"):
            parse_channels(text, count)


def test_mixed_parts_keep_order_without_repeats() -> None:
    assert parse_channels("5,0-2,1:4", 10) == (5, 0, 1, 2, 3)
    assert parse_channels(None, 3) == (0, 1, 2) == parse_channels("all", 3)
    assert parse_channels("0-15", None) == tuple(range(16))  # count not known yet (dream's -l)


@pytest.mark.parametrize(
    "text,message",
    [
        ("x", "bad channels"),
        ("1:2:3:4", "bad channels"),
        ("4-2", "backwards"),
        ("12", "out of range"),
        ("0:4:0", "at least 1"),
        ("3:3", "selects no"),
    ],
)
def test_bad_selections(text: str, message: str) -> None:
    with pytest.raises(VizError, match=message):
        parse_channels(text, 10)
