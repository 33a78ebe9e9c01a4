"""defender.endpoint.indicators_from_csv: CSV text -> indicator dicts for mde_indicator."""
import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.defender.endpoint.plugins.filter.indicators_from_csv import FilterModule, indicators_from_csv


def test_rows_become_dicts_with_typed_cells_and_empty_cells_left_out():
    text = (
        "# exported from the TI platform\n"
        " Indicator_Value , indicator_type,action,title,description,severity,rbac_group_names,generate_alert\n"
        "198.51.100.7,IpAddress,Block,C2 server,\"Seen in incident 4711, stage 2\",High,Servers; The-A-Team ,\n"
        "\n"
        "evil.example.net,DomainName,Audit,Look-alike,Phishing,,,yes\n"
    )
    assert indicators_from_csv(text) == [
        {"indicator_value": "198.51.100.7", "indicator_type": "IpAddress", "action": "Block", "title": "C2 server",
         "description": "Seen in incident 4711, stage 2", "severity": "High", "rbac_group_names": ["Servers", "The-A-Team"]},
        {"indicator_value": "evil.example.net", "indicator_type": "DomainName", "action": "Audit", "title": "Look-alike",
         "description": "Phishing", "generate_alert": True},
    ]


def test_header_only_or_empty_text_gives_no_indicator():
    assert indicators_from_csv("indicator_value,indicator_type\n") == []
    assert indicators_from_csv("") == []


@pytest.mark.parametrize("text, message", [
    ("indicator_value,,action\n1,2,3\n", "header row"),
    ("indicator_value,indicator_value\n1,2\n", "header row"),
    ("indicator_value,indicator_type\n1,2,3\n", "data row 2 has 3 cells"),
    ("indicator_value,generate_alert\nx,maybe\n", "generate_alert must be true or false"),
])
def test_malformed_csv_fails_with_the_row(text, message):
    with pytest.raises(AnsibleFilterError, match=message):
        indicators_from_csv(text)


def test_not_text_fails():
    with pytest.raises(AnsibleFilterError, match="expects CSV text"):
        indicators_from_csv([{"a": 1}])


def test_registered_under_its_name():
    assert FilterModule().filters()["indicators_from_csv"] is indicators_from_csv


def test_a_utf8_byte_order_mark_does_not_become_part_of_the_first_column_name():
    # Excel's "CSV UTF-8" format starts the file with U+FEFF, as text or as the bytes EF BB BF.
    text = u"\ufeffindicator_value,indicator_type\r\nevil.example.net,DomainName\r\n"
    expected = [{"indicator_value": "evil.example.net", "indicator_type": "DomainName"}]
    assert indicators_from_csv(text) == expected
    assert indicators_from_csv(text.encode("utf-8")) == expected


def test_a_quoted_cell_keeps_all_its_lines_even_blank_or_starting_with_a_hash():
    text = (
        "indicator_value,indicator_type,description,title\r\n"
        "evil.example.net,DomainName,\"first line\r\n"
        "\r\n"
        "# not a comment, a line of the description\r\n"
        "last line\",Phishing\r\n"
        "# a comment between rows\r\n"
        "\r\n"
        "198.51.100.7,IpAddress,\"one\ntwo\",C2\n"
    )
    assert indicators_from_csv(text) == [
        {"indicator_value": "evil.example.net", "indicator_type": "DomainName", "title": "Phishing",
         "description": "first line\n\n# not a comment, a line of the description\nlast line"},
        {"indicator_value": "198.51.100.7", "indicator_type": "IpAddress", "description": "one\ntwo", "title": "C2"},
    ]


def test_row_numbers_count_records_not_lines():
    text = "indicator_value,generate_alert\n\"a\nb\",yes\nc,maybe\n"
    with pytest.raises(AnsibleFilterError, match="data row 3: generate_alert"):
        indicators_from_csv(text)
