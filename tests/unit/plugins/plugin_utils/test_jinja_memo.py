"""The inventory's memo of pure Jinja expressions: what counts as pure, one evaluation per distinct input, copies
handed out, and giving up on an expression whose inputs are mostly distinct."""
import pytest

from ansible_collections.defender.endpoint.plugins.plugin_utils import jinja_memo


@pytest.mark.parametrize("source,expression,expected", [
    ("mde_os_platform", True, ("mde_os_platform",)),
    ("'psrp' if mde_os_platform.startswith('Windows') else 'ssh'", True, ("mde_os_platform",)),
    ("mde_machine_tags | map('lower') | list", True, ("mde_machine_tags",)),
    ("mde_risk_score == 'High' and inventory_hostname is search('srv')", True, ("inventory_hostname", "mde_risk_score")),
    ("lookup('env', 'HOME') ~ mde_id", True, None),
    ("mde_id | random", True, None),
    ("now()", True, None),
    ("{{ mde_computer_dns_name | split('.') | first }}", False, ("mde_computer_dns_name",)),
    ("{% for x in mde_machine_tags %}{{ x }}{% endfor %}", False, None),
    ("{{ query('inventory_hostnames', 'all') }}", False, None),
    ("mde_id +", True, None),                   # not Jinja at all: evaluated (and failing) as Ansible would
    (None, True, None),
])
def test_pure_expressions(source, expression, expected):
    assert jinja_memo.pure_variables(source, expression) == expected


def test_memo_evaluates_once_per_distinct_input():
    memo = jinja_memo.Memo()
    calls = []

    def compute(v):
        calls.append(v)
        return [v["mde_os_platform"].lower()]

    results = []
    for platform in ["Windows11", "Linux", "Windows11", "Linux", "Windows11"]:
        v = {"mde_os_platform": platform, "mde_id": platform + "-id"}
        results.append(memo.evaluate("mde_os_platform | lower | list", v, lambda v=v: compute(v)))
    assert results == [["windows11"], ["linux"], ["windows11"], ["linux"], ["windows11"]]
    assert len(calls) == 2
    results[0].append("changed")  # a result handed out is a copy
    v = {"mde_os_platform": "Windows11"}
    assert memo.evaluate("mde_os_platform | lower | list", v, lambda: compute(v)) == ["windows11"]
    # an impure expression is evaluated every time
    n = []
    for _i in range(3):
        memo.evaluate("lookup('env', 'X')", {}, lambda: n.append(1))
    assert len(n) == 3


def test_values_that_are_not_plain_and_missing_variables_are_evaluated_every_time():
    memo = jinja_memo.Memo()
    n = []
    for _i in range(3):
        memo.evaluate("mde_vm_metadata is defined", {"mde_vm_metadata": object()}, lambda: n.append(1))
        memo.evaluate("mde_vm_metadata is defined", {}, lambda: n.append(2))
    assert n == [1, 2] * 3
    frozen = ("dict", ("a", ("bool", True)), ("b", ("list", ("int", 1), ("NoneType", None))))
    assert jinja_memo.freeze({"b": [1, None], "a": True}) == frozen


def test_an_exception_is_not_remembered():
    memo = jinja_memo.Memo()
    calls = []

    def fail():
        calls.append(1)
        raise ValueError("boom")

    for _i in range(2):
        with pytest.raises(ValueError):
            memo.evaluate("mde_id | upper", {"mde_id": "x"}, fail)
    assert len(calls) == 2


def test_an_expression_of_mostly_distinct_values_stops_being_remembered(monkeypatch):
    monkeypatch.setattr(jinja_memo, "MEMO_GIVE_UP", 10)
    memo = jinja_memo.Memo()
    for i in range(12):
        memo.evaluate("mde_id | upper", {"mde_id": "id-%d" % i}, lambda i=i: "ID-%d" % i)
    assert memo.plans["mde_id | upper"] is None                    # given up: evaluated per host from now on
    assert not [k for k in memo.results if k[0] == "mde_id | upper"]  # and what it held is freed
    assert memo.evaluate("mde_id | upper", {"mde_id": "id-0"}, lambda: "fresh") == "fresh"
