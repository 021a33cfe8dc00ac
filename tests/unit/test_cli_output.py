"""solo.cli_output: parsing CLI arguments and printing tables."""
from __future__ import annotations

import pytest

from solo.cli_output import format_bytes, format_duration, parse_bytes, parse_pairs, print_table
from solo.errors import InvalidRequest


@pytest.mark.parametrize("text,expected", [
    ("100", 100), ("512MiB", 512 * 1024**2), ("2GB", 2 * 1000**3), ("2gb", 2 * 1000**3), ("1.5GiB", 3 * 1024**3 // 2),
    (" 4 KiB ", 4096), ("10b", 10), ("3k", 3000), ("1TiB", 1024**4), ("0", 0),
])
def test_parse_bytes_reads_units(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "-1", "12XB", "1.2.3MB", "MiB", "1e9", "5 M iB"])
def test_parse_bytes_rejects_bad_input_with_an_example(text):
    with pytest.raises(InvalidRequest) as err:
        parse_bytes(text)
    assert repr(text) in err.value.message and "512MiB" in err.value.message


def test_parse_pairs_splits_on_the_first_equals_sign():
    assert parse_pairs(["a=b", "url=http://x?y=z", "empty="], "--env") == {"a": "b", "url": "http://x?y=z",
                                                                           "empty": ""}
    assert parse_pairs(None, "--env") == {}


@pytest.mark.parametrize("item", ["novalue", "=value"])
def test_parse_pairs_rejects_items_without_a_key_naming_the_flag(item):
    with pytest.raises(InvalidRequest, match=f"--label takes KEY=VALUE, got '{item}'"):
        parse_pairs(["ok=1", item], "--label")


def test_print_table_aligns_columns_under_their_titles(capsys):
    rows = [{"name": "counter", "state": "RUNNING", "version": "1"},
            {"name": "kv", "state": "FAILED", "version": "1.0.0-beta"}]
    print_table(rows, [("NAME", "name"), ("STATE", "state"), ("VERSION", "version")])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].split() == ["NAME", "STATE", "VERSION"]
    assert lines[1].split() == ["counter", "RUNNING", "1"] and lines[2].split() == ["kv", "FAILED", "1.0.0-beta"]
    state_col, version_col = lines[0].index("STATE"), lines[0].index("VERSION")
    assert lines[1].index("RUNNING") == lines[2].index("FAILED") == state_col
    assert lines[2].index("1.0.0-beta") == version_col
    assert state_col == len("counter") + 2  # widest cell plus two spaces
    assert all(line == line.rstrip() for line in lines)  # no padding after the last column, header included


def test_print_table_shows_missing_keys_as_blank(capsys):
    print_table([{"name": "a"}], [("NAME", "name"), ("NODE", "node")])
    assert capsys.readouterr().out.splitlines() == ["NAME  NODE", "a"]


def test_print_table_with_no_rows_prints_the_empty_message_or_nothing(capsys):
    print_table([], [("NAME", "name")], empty="no services; deploy one with `solo deploy`")
    assert capsys.readouterr().out == "no services; deploy one with `solo deploy`\n"
    print_table([], [("NAME", "name")])
    assert capsys.readouterr().out == ""


def test_format_helpers():
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KiB" and format_bytes(3 * 1024**4) == "3.0 TiB"
    assert format_duration(59) == "59s" and format_duration(61) == "1m01s" and format_duration(3720) == "1h02m"
