"""The collection's one time parser and formatter, and the OData helpers (plugins/module_utils/odata.py)."""
import datetime

import pytest

from ansible_collections.defender.endpoint.plugins.module_utils import odata

UTC = datetime.timezone.utc


@pytest.mark.parametrize("text,expected", [
    ("2030-01-01T00:00:00Z", datetime.datetime(2030, 1, 1, tzinfo=UTC)),
    ("2030-01-01T00:00:00.1234567Z", datetime.datetime(2030, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)),
    ("2030-01-01", datetime.datetime(2030, 1, 1, tzinfo=UTC)),
    ("2030-01-01T01:00:00+01:00", datetime.datetime(2030, 1, 1, tzinfo=UTC)),
    ("2030-01-01T01:00:00+0100", datetime.datetime(2030, 1, 1, tzinfo=UTC)),
    ("2030-01-01T00:00:00", datetime.datetime(2030, 1, 1, tzinfo=UTC)),
    ("2030-01-01 00:00", datetime.datetime(2030, 1, 1, tzinfo=UTC)),
])
def test_parse_time_reads_iso_8601_to_utc(text, expected):
    parsed = odata.parse_time(text, "created_after")
    assert parsed == expected and parsed.utcoffset() == datetime.timedelta(0)


def test_parse_time_reads_ages_unless_told_not_to():
    before = odata.utcnow()
    assert abs((before - odata.parse_time("24h")) - datetime.timedelta(hours=24)) < datetime.timedelta(seconds=5)
    assert abs((before - odata.parse_time("7d")) - datetime.timedelta(days=7)) < datetime.timedelta(seconds=5)
    with pytest.raises(ValueError) as e:
        odata.parse_time("24h", "expiration_time", relative=False)
    assert "expiration_time must be an ISO 8601 time" in str(e.value) and "age" not in str(e.value)


@pytest.mark.parametrize("bad", ["yesterday", "last week", "2024-13-45", "a week", "", None, "5", "26/01/2021"])
def test_parse_time_names_the_option(bad):
    with pytest.raises(ValueError, match="^last_seen_within must be an ISO 8601 time"):
        odata.parse_time(bad, "last_seen_within")


def test_ticks_are_exact_to_the_apis_seven_digits():
    t = odata.time_ticks
    assert odata.ticks_text(t("2021-01-26T20:33:57.7220239Z")) == "2021-01-26T20:33:57.7220239Z"
    assert t("2021-01-26T20:33:59.2Z") == t("2021-01-26T21:33:59.2+01:00")
    assert t("2021-01-26T20:33:59.123456789Z") == t("2021-01-26T20:33:59.1234567Z")
    assert t(datetime.datetime(2021, 1, 26, 20, 33, 59, 500000, tzinfo=UTC)) == t("2021-01-26T20:33:59.5Z")
    assert odata.ticks_time(t("2021-01-26T20:33:59.9999999Z")).microsecond == 999999
    with pytest.raises(ValueError):
        t("2021-01-26")                       # a date alone is not an API timestamp
    assert t("2021-01-26", allow_date=True) == t("2021-01-26T00:00:00Z")


def test_format_time_floors_to_the_second_or_keeps_the_fraction():
    dt = datetime.datetime(2026, 1, 31, 9, 0, 0, 500000, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    assert odata.format_time(dt) == "2026-01-31T08:00:00Z"
    assert odata.format_time(dt, fraction=True) == "2026-01-31T08:00:00.5Z"
    assert odata.format_time(odata.time_ticks("2026-01-31T08:00:59.9999999Z")) == "2026-01-31T08:00:59Z"


def test_time_or_none_for_entity_fields():
    assert odata.time_or_none("2019-01-02T16:39:38+02:00") == odata.time_or_none("2019-01-02T14:39:38Z")
    assert odata.time_or_none("garbage") is None and odata.time_or_none(None) is None


def test_ages():
    assert [odata.age_seconds(v) for v in ("30s", "5m", "1h", "2d", "1w", "1.5h")] == [30, 300, 3600, 172800,
                                                                                       604800, 5400]
    assert odata.age_seconds("60") is None and odata.age_seconds("60", bare=True) == 60
    assert odata.age_seconds(True, bare=True) is None and odata.age_seconds(-5, bare=True) == -5


def test_quote_and_any_of():
    assert odata.quote("o'neil") == "'o''neil'"
    assert odata.any_of("status", ["New"]) == "status eq 'New'"
    assert odata.any_of("status", ["New", "Resolved"]) == "(status eq 'New' or status eq 'Resolved')"
    assert odata.any_of("status", []) is None


@pytest.mark.parametrize("kind,entity", [
    ("machine_action", {"id": ".."}), ("machine_action", {"id": "/etc/passwd"}), ("machine_action", {"id": "../../x"}),
    ("machine_action", {"id": None}), ("machine_action", {}), ("machine_action", {"id": ["a"]}),
    ("machine", {"id": "1e5b" * 9}), ("machine", {"id": "..\\..\\x"}), ("investigation", {"id": "63017/../1"}),
    ("incident", {"id": "12 34"}), ("alert", {"id": ".."}), ("alert", {"id": "da1/../x"}), ("indicator", {"id": True}),
])
def test_an_answer_id_without_its_documented_shape_is_refused(kind, entity):
    from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError
    with pytest.raises(MDEError) as e:
        odata.answer_id(entity, kind)
    assert "the answer was refused" in str(e.value)


@pytest.mark.parametrize("kind,value", [
    ("machine_action", "5382f7ea-7557-4ab7-9782-d50480024a4e"), ("machine", "1e5bc9d7e413ddd7902c2932e418702b84d0cc07"),
    ("investigation", 63017), ("incident", "2972395"), ("alert", "da637472900382838869_1364969609"), ("indicator", "995"),
])
def test_an_answer_id_of_the_documented_shape_is_used_as_it_is(kind, value):
    assert odata.answer_id({"id": value}, kind) == str(value)


@pytest.mark.parametrize("value", ["", ".", ".."])
def test_a_path_segment_never_names_another_resource(value):
    with pytest.raises(ValueError):
        odata.path_segment(value)
