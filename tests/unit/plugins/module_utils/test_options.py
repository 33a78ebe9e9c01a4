"""The shared options and the option groups are defined once (module_utils/options.py): the doc fragments, the module
argument specs, the inventory plugin's options and the EDA source all follow that table."""
import importlib
import os

import yaml

import pytest

from ansible.module_utils.errors import AnsibleFallbackNotFound

from ansible_collections.defender.endpoint.plugins.doc_fragments.auth import ModuleDocFragment
from ansible_collections.defender.endpoint.plugins.module_utils import options
from ansible_collections.defender.endpoint.plugins.module_utils.module import AUTH_ARGUMENT_SPEC, env_fallback


def documented(fragment):
    return yaml.safe_load(fragment)["options"]


def test_module_fragment_documents_each_shared_option_as_defined():
    docs = documented(ModuleDocFragment.DOCUMENTATION)
    assert sorted(docs) == sorted(options.SHARED_OPTIONS)
    for name, spec in options.SHARED_OPTIONS.items():
        doc = docs[name]
        assert doc["type"] == spec["type"], name
        assert doc.get("default") == spec.get("default"), name
        assert doc.get("choices") == (list(spec["choices"]) if "choices" in spec else None), name
        text = " ".join(doc["description"])
        for var in spec["env"]:
            assert "E(%s)" % var in text, (name, var)


def test_inventory_fragment_declares_the_same_environment_variables():
    docs = documented(ModuleDocFragment.INVENTORY)
    assert sorted(docs) == sorted(options.SHARED_OPTIONS)
    for name, spec in options.SHARED_OPTIONS.items():
        doc = docs[name]
        assert doc["type"] == spec["type"], name
        assert doc.get("default") == spec.get("default"), name
        assert [e["name"] for e in doc.get("env", [])] == list(spec["env"]), name


def test_argument_spec_follows_the_table():
    spec = options.argument_spec(env_fallback)
    assert spec == AUTH_ARGUMENT_SPEC
    for name, entry in spec.items():
        assert entry["fallback"] == (env_fallback, list(options.SHARED_OPTIONS[name]["env"]))
        assert entry.get("no_log", False) == (name in options.SECRETS)


def test_a_module_refines_a_shared_option_and_keeps_its_fallback():
    spec = options.full_spec({"timeout": {"default": 210}, "query": {"type": "str"}}, env_fallback)
    assert spec["timeout"]["default"] == 210 and spec["timeout"]["fallback"][1] == ["MDE_TIMEOUT"]
    assert spec["query"] == {"type": "str"}


def test_from_environment_takes_the_first_non_empty_variable():
    got = options.from_environment({"client_id": None}, {"MDE_CLIENT_ID": " ", "AZURE_CLIENT_ID": "app"})
    assert got["client_id"] == "app" and got["cloud"] == "global" and got["timeout"] == 30


def test_the_event_source_reads_the_same_table():
    from ansible_collections.defender.endpoint.extensions.eda.plugins.event_source import mde_alerts
    config = mde_alerts.AlertPoller.parse_args({"timeout": "12"}, {"AZURE_CLIENT_ID": "app", "MDE_VALIDATE_CERTS": "no"})
    assert config["auth"] == options.resolve({"timeout": "12"}, {"AZURE_CLIENT_ID": "app", "MDE_VALIDATE_CERTS": "no"})
    assert sorted(config["auth"]) == sorted(options.SHARED_OPTIONS)


def test_resolve_converts_as_ansible_would():
    environ = {"MDE_CLIENT_ID": " ", "AZURE_CLIENT_ID": "app", "MDE_TOKEN_CACHE": "off", "MDE_CA_PATH": "~/ca.pem"}
    got = options.resolve({"timeout": "12", "client_id": ""}, environ)
    assert got["client_id"] == "app" and got["timeout"] == 12 and got["token_cache"] is False
    assert got["ca_path"] == os.path.expanduser("~/ca.pem") and got["cloud"] == "global" and got["validate_certs"] is True
    assert got["auth_mode"] is None
    for values, message in (({"timeout": "slow"}, "timeout must be a whole number, got 'slow'."),
                            ({"validate_certs": "maybe"}, "validate_certs must be a boolean, got 'maybe'."),
                            ({"cloud": "mars"}, "cloud must be one of global, gcc, gcc_high, dod, got 'mars'.")):
        with pytest.raises(ValueError) as e:
            options.resolve(values, {})
        assert str(e.value) == message


def source_docs():
    """Each event source's documented options and its table: the shared options (documented by mde_alerts; the other
    sources say in a note that theirs are the same), the polling options, its own."""
    from ansible_collections.defender.endpoint.extensions.eda.plugins.event_source import mde_alerts, mde_incidents
    from ansible_collections.defender.endpoint.plugins.module_utils import poller
    for source, shared in ((mde_alerts, True), (mde_incidents, False)):
        doc = yaml.safe_load(source.DOCUMENTATION)
        cls = [v for v in vars(source).values() if isinstance(v, type) and issubclass(v, poller.Poller)
               and v is not poller.Poller][0]
        table = dict(options.SHARED_OPTIONS) if shared else {}
        table.update(poller.POLL_OPTIONS)
        table.update(cls.OPTIONS)
        yield source.__name__.rsplit(".", 1)[-1], doc, table, shared


@pytest.mark.parametrize("name, doc, table, shared", list(source_docs()), ids=lambda v: v if isinstance(v, str) else "")
def test_event_source_documentation_follows_the_tables(name, doc, table, shared):
    docs = doc["options"]
    assert doc["name"] == name
    assert sorted(docs) == sorted(table)
    for option, spec in table.items():
        entry = docs[option]
        assert entry["type"] == spec["type"], (name, option)
        assert entry.get("default") == spec.get("default"), (name, option)
        assert entry.get("choices") == (list(spec["choices"]) if "choices" in spec else None), (name, option)
        text = " ".join(entry["description"]) if isinstance(entry["description"], list) else entry["description"]
        for var in spec.get("env", ()):
            assert "E(%s)" % var in text, (name, option, var)
    if not shared:
        assert any("mde_alerts" in note for note in doc.get("notes", [])), name


def test_an_empty_variable_is_unset(monkeypatch):
    """AWX sets every field of a credential type, the unused ones empty: MDE_AUTH_MODE="" is no sign-in mode."""
    monkeypatch.setenv("MDE_AUTH_MODE", "")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/run/token")
    monkeypatch.setenv("MDE_FEDERATED_TOKEN_FILE", " ")
    with pytest.raises(AnsibleFallbackNotFound):
        env_fallback("MDE_AUTH_MODE")
    assert env_fallback("MDE_FEDERATED_TOKEN_FILE", "AZURE_FEDERATED_TOKEN_FILE") == "/run/token"


# -- option groups: each group's doc fragment documents its spec, and the modules take both --------------------------
def fragment_of(group):
    """The YAML the group's fragment name (defender.endpoint.<file>[.<attribute>]) stands for."""
    parts = group.fragment.split(".")
    assert parts[:2] == ["defender", "endpoint"] and len(parts) in (3, 4), group.fragment
    module = importlib.import_module("ansible_collections.defender.endpoint.plugins.doc_fragments." + parts[2])
    return getattr(module.ModuleDocFragment, parts[3].upper() if len(parts) == 4 else "DOCUMENTATION")


def modules():
    directory = os.path.join(os.path.dirname(options.__file__), "..", "modules")
    for name in sorted(os.listdir(directory)):
        if name.startswith("mde_") and name.endswith(".py"):
            yield importlib.import_module("ansible_collections.defender.endpoint.plugins.modules." + name[:-3])


@pytest.mark.parametrize("group", options.GROUPS, ids=lambda g: g.fragment)
def test_each_group_fragment_documents_its_spec(group):
    docs = documented(fragment_of(group))
    assert sorted(docs) == sorted(group.spec)
    for name, entry in group.spec.items():
        doc = docs[name]
        assert doc["type"] == entry["type"], name
        assert doc.get("default") == entry.get("default"), name
        assert doc.get("choices") == entry.get("choices"), name
        assert doc["description"], name


@pytest.mark.parametrize("group", options.GROUPS, ids=lambda g: g.fragment)
def test_a_module_takes_a_group_with_its_fragment_and_its_spec(group):
    """A module that extends a group's fragment has the group's options with their types and rules; a module that
    has all of a group's options takes its fragment (mde_machine_info's machine_name lists every match: its own)."""
    users = 0
    for module in modules():
        doc = yaml.safe_load(module.DOCUMENTATION)
        extends = doc.get("extends_documentation_fragment") or []
        has_all = all(name in module.ARGUMENT_SPEC for name in group.spec)
        if group.fragment not in extends:
            assert not has_all or module.__name__.endswith(".mde_machine_info"), (module.__name__, group.fragment)
            continue
        users += 1
        assert has_all, module.__name__
        for name, entry in group.spec.items():
            assert module.ARGUMENT_SPEC[name]["type"] == entry["type"], (module.__name__, name)
        rules = getattr(module, "SPEC_OPTIONS", {})
        for keyword, lists in group.rules.items():
            for names in lists:
                assert any(set(names) <= set(given) for given in rules.get(keyword, [])), (module.__name__, keyword)
    assert users >= 2, group.fragment


def test_group_checks_name_the_option():
    with pytest.raises(ValueError, match="machine_id"):
        options.MACHINE_TARGET.check(dict(machine_id="../x", machine_name=None))
    with pytest.raises(ValueError, match="machine_name"):
        options.MACHINE_TARGET.check(dict(machine_id=None, machine_name="  "))
    options.MACHINE_TARGET.check(dict(machine_id="1E5BC9D7E413DDD7902C2932E418702B84D0CC07", machine_name=None))
    with pytest.raises(ValueError, match="wait_timeout must be at least 1 second, got 0"):
        options.WAIT.check(dict(wait=True, wait_timeout=0))
    with pytest.raises(ValueError, match="updated_after"):
        options.UPDATED_AFTER.check(dict(updated_after="yesterday"))
    options.CREATED_AFTER.check(dict(created_after="7d"))


def test_a_refined_group_spec_leaves_the_group_alone():
    spec = options.WAIT.refined(wait_timeout=dict(default=600))
    assert spec["wait_timeout"] == dict(type="int", default=600) and options.WAIT.spec["wait_timeout"]["default"] == 1800
    merged = options.module_spec(options.MACHINE_TARGET, spec, dict(comment=dict(type="str")))
    assert list(merged) == ["machine_id", "machine_name", "wait", "wait_timeout", "comment"]
    rules = options.spec_rules(options.MACHINE_TARGET, dict(mutually_exclusive=[["a", "b"]], required_by=dict(a="b")))
    assert rules == dict(mutually_exclusive=[["machine_id", "machine_name"], ["a", "b"]],
                         required_one_of=[["machine_id", "machine_name"]], required_by=dict(a="b"))
