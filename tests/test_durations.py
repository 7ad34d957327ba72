"""Go durations: the one parser and the one formatter (catalog/durations.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gossamer.catalog.durations import (
    MAX_NS,
    MIN_NS,
    DurationError,
    DurationRangeError,
    format_compact,
    format_ns,
    format_seconds,
    parse_ns,
    parse_seconds,
    parse_timedelta,
)

S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("-0", 0),
        ("+0", 0),
        ("0s", 0),
        ("300ms", 300_000_000),
        ("1.5h", 5_400 * S),
        ("2h45m", 9_900 * S),
        ("-1.5h", -5_400 * S),
        ("1h30m", 5_400 * S),
        (".5s", S // 2),
        ("1.s", S),
        ("1m0.5s", 60 * S + S // 2),
        ("2ns", 2),
        ("2us", 2_000),
        ("2µs", 2_000),  # U+00B5 micro sign
        ("2μs", 2_000),  # U+03BC Greek mu
        ("1.0000000001s", S),  # below a nanosecond: dropped, as Go does
        ("9223372036854775807ns", MAX_NS),
        ("-9223372036854775808ns", MIN_NS),
        ("+3s", 3 * S),
    ],
)
def test_parse_go_durations(text: str, ns: int) -> None:
    assert parse_ns(text) == ns
    assert parse_seconds(text) == pytest.approx(ns / S)


@pytest.mark.parametrize(
    "text",
    ["", "30", "-", "+", "s", ".s", "5x", "1.2.3s", "--1s", "5 s", "1e3s", "\u0661s", " 1s", "1s "],
)
def test_parse_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(DurationError) as info:
        parse_ns(text)
    assert not isinstance(info.value, DurationRangeError)


@pytest.mark.parametrize("text", ["9223372036854775808ns", "99999999999999h", "9" * 400 + "s"])
def test_out_of_range_is_its_own_error(text: str) -> None:
    with pytest.raises(DurationRangeError):
        parse_ns(text)


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_500, "1.5µs"),
        (500_000_000, "500ms"),
        (1_500_000_000, "1.5s"),
        (10 * S, "10s"),
        (90 * S, "1m30s"),
        (3_600 * S, "1h0m0s"),
        (5_400 * S, "1h30m0s"),
        (-1_500_000_000, "-1.5s"),
        (MIN_NS, "-2562047h47m16.854775808s"),
        (MAX_NS, "2562047h47m16.854775807s"),
    ],
)
def test_format_is_go_duration_string(ns: int, text: str) -> None:
    assert format_ns(ns) == text


def test_format_seconds_rounds_to_the_nanosecond() -> None:
    assert (format_seconds(0.2), format_seconds(3600), format_seconds(1e-7)) == (
        "200ms",
        "1h0m0s",
        "100ns",
    )


@given(st.integers(min_value=MIN_NS, max_value=MAX_NS))
def test_format_then_parse_round_trips(ns: int) -> None:
    assert parse_ns(format_ns(ns)) == ns


@given(st.integers(min_value=MIN_NS, max_value=MAX_NS))
def test_parse_is_canonical_after_one_format(ns: int) -> None:
    text = format_ns(ns)
    assert format_ns(parse_ns(text)) == text


@given(st.text(alphabet="0123456789.+-nsuµμmh ", max_size=12))
def test_any_text_parses_or_raises_the_one_error(text: str) -> None:
    try:
        ns = parse_ns(text)
    except DurationError:
        return
    assert MIN_NS <= ns <= MAX_NS


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(minutes=1), "1m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(hours=1), "1h"),
        (timedelta(milliseconds=1500), "1s500ms"),
    ],
)
def test_compact_form_for_config_display(value: timedelta, text: str) -> None:
    assert format_compact(value) == text
    assert parse_timedelta(text) == value


@given(st.integers(min_value=0, max_value=10**12))
def test_compact_form_round_trips_to_the_millisecond(millis: int) -> None:
    value = timedelta(milliseconds=millis)
    assert parse_timedelta(format_compact(value)) == value
