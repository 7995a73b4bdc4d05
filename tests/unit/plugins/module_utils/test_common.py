import datetime

import pytest

from ansible_collections.auditron.dr.plugins.module_utils.common import (
    DRError, format_time, human_bytes, human_duration, parse_time)


@pytest.mark.parametrize("text, expected", [
    ("2026-11-24T02:00:00Z", datetime.datetime(2026, 11, 24, 2, 0, tzinfo=datetime.timezone.utc)),
    ("2026-11-24 02:00", datetime.datetime(2026, 11, 24, 2, 0, tzinfo=datetime.timezone.utc)),
    ("2026-11-24T03:30:00+01:30", datetime.datetime(2026, 11, 24, 2, 0, tzinfo=datetime.timezone.utc)),
    ("2026-11-24T02:00:00.25Z", datetime.datetime(2026, 11, 24, 2, 0, 0, 250000, tzinfo=datetime.timezone.utc)),
])
def test_parse_time_accepts_iso8601(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01T00:00:00Z", "2026-11-24T25:00:00Z", "", None,
                                  "2026-11-24T02:00:00Z'; DROP TABLE x; --"])
def test_parse_time_names_the_field_on_bad_input(text):
    with pytest.raises(DRError) as err:
        parse_time(text, what="restore_target_time")
    assert "restore_target_time" in str(err.value)


def test_format_time_is_utc_with_z():
    moment = parse_time("2026-11-24T03:00:00+01:00")
    assert format_time(moment) == "2026-11-24T02:00:00Z"


def test_human_units():
    assert human_bytes(512) == "512 B"
    assert human_bytes(3 * 1024 * 1024) == "3.0 MiB"
    assert human_duration(42.0) == "42.0 s"
    assert human_duration(125) == "2 min 05 s"
    assert human_duration(3 * 3600 + 60) == "3 h 01 min"
