"""The shared options are defined once (module_utils/options.py): the doc fragment, the module argument spec, the
inventory plugin's options and the EDA source all follow that table."""
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
    assert mde_alerts.AUTH_OPTIONS is options.SHARED_OPTIONS


def test_an_empty_variable_is_unset(monkeypatch):
    """AWX sets every field of a credential type, the unused ones empty: MDE_AUTH_MODE="" is no sign-in mode."""
    monkeypatch.setenv("MDE_AUTH_MODE", "")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/run/token")
    monkeypatch.setenv("MDE_FEDERATED_TOKEN_FILE", " ")
    with pytest.raises(AnsibleFallbackNotFound):
        env_fallback("MDE_AUTH_MODE")
    assert env_fallback("MDE_FEDERATED_TOKEN_FILE", "AZURE_FEDERATED_TOKEN_FILE") == "/run/token"
