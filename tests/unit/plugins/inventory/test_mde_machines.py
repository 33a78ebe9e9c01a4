"""Unit tests of the mde_machines inventory plugin: real Ansible inventory objects, the API client replaced by a
recorder that serves Machine entities (the integration tests run it against the emulator)."""
import datetime
import json
import os
import sys

import pytest
import yaml

from ansible.errors import AnsibleError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader, inventory_loader
from ansible.utils.collection_loader import AnsibleCollectionConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
# The plugin loader (option definitions, doc fragments) needs Ansible's collection finder. Modules of the collection
# that other test files imported by plain sys.path import are dropped first, so that the finder loads them again.
if AnsibleCollectionConfig.collection_finder is None:
    for _name in [n for n in sys.modules if n == "ansible_collections" or n.startswith("ansible_collections.")]:
        del sys.modules[_name]
    init_plugin_loader([os.path.join(ROOT, ".build", "src")])

from ansible_collections.defender.endpoint.plugins.module_utils import connect as client_module  # noqa: E402
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEConfigError, MDEError  # noqa: E402
from ansible_collections.defender.endpoint.plugins.inventory import mde_machines as plugin_module  # noqa: E402


def machine(i, **overrides):
    m = {
        "id": "%040x" % (i + 1),
        "computerDnsName": "ws-%05d.contoso.local" % i,
        "firstSeen": "2026-01-01T08:00:00.1234567Z",
        "lastSeen": "2026-02-01T08:00:00.1234567Z",
        "osPlatform": "Windows11",
        "onboardingStatus": "Onboarded",
        "version": "23H2",
        "osBuild": 22631,
        "lastIpAddress": "10.0.0.%d" % (i + 1),
        "lastExternalIpAddress": "203.0.113.%d" % (i + 1),
        "healthStatus": "Active",
        "rbacGroupName": "The-A-Team",
        "rbacGroupId": 140,
        "riskScore": "Low",
        "exposureLevel": "Medium",
        "isAadJoined": True,
        "aadDeviceId": "80fe8ff8-2624-418e-9591-41f0491218f%d" % (i % 10),
        "machineTags": ["Finance"],
        "deviceValue": "Normal",
        "ipAddresses": [{"ipAddress": "10.0.0.%d" % (i + 1), "macAddress": "00155D000001", "type": "Ethernet",
                         "operationalStatus": "Up"}],
        "vmMetadata": None,
    }
    m.update(overrides)
    return m


class Recorder:
    """Stands in for create_client: records the options and list() calls, serves the given machines."""

    def __init__(self, machines=(), error=None):
        self.machines = list(machines)
        self.error = error
        self.created = []
        self.calls = []
        self.warnings = []  # what the token cache and budget worked around, as MDEClient has it

    def __call__(self, **options):
        self.created.append(options)
        if isinstance(self.error, MDEConfigError):
            raise self.error
        return self

    def list(self, path, odata_filter=None, empty_on_404=False, **kwargs):
        self.calls.append(dict(path=path, odata_filter=odata_filter, empty_on_404=empty_on_404, **kwargs))
        if self.error:
            raise self.error
        return iter(self.machines)

    def pages(self, path, odata_filter=None, empty_on_404=False, **kwargs):
        """MDEClient.pages: here every machine in one page (the plugin counts pages for its progress lines)."""
        items = list(self.list(path, odata_filter=odata_filter, empty_on_404=empty_on_404, **kwargs))
        return iter([items] if items else [])


@pytest.fixture
def api(monkeypatch, tmp_path_factory):
    rec = Recorder()
    monkeypatch.setattr(client_module, "create_client", rec)
    for name in list(os.environ):
        if name.startswith(("MDE_", "AZURE_", "ANSIBLE_INVENTORY_CACHE", "ANSIBLE_CACHE")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MDE_TENANT_ID", "contoso.onmicrosoft.com")
    monkeypatch.setenv("MDE_CLIENT_ID", "app-id")
    monkeypatch.setenv("MDE_CLIENT_SECRET", "s3cret-value")
    monkeypatch.setenv("MDE_TOKEN_CACHE_DIR", str(tmp_path_factory.mktemp("token-cache") / "defender.endpoint"))
    return rec


class Run:
    def __init__(self, inventory, warnings):
        self.inventory = inventory
        self.warnings = warnings

    @property
    def hosts(self):
        return sorted(self.inventory.hosts)

    def vars(self, host):
        return self.inventory.hosts[host].vars

    def group(self, name):
        return sorted(h.name for h in self.inventory.groups[name].get_hosts())


def parse(tmp_path, config, name="mde.yml", cache=True):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(dict({"plugin": "defender.endpoint.mde_machines"}, **config)))
    plugin = inventory_loader.get("defender.endpoint.mde_machines")
    warnings = []
    plugin.display = type("D", (), {"warning": lambda self, msg: warnings.append(msg),
                                    "vvv": lambda self, msg: None, "verbosity": 0,
                                    "display": lambda self, msg, **kwargs: None})()
    inventory = InventoryData()
    plugin.parse(inventory, DataLoader(), str(path), cache=cache)
    if getattr(plugin, "_cache", None) is not None:
        plugin.update_cache_if_changed()  # as InventoryManager does after parse
    return Run(inventory, warnings)


@pytest.mark.parametrize("prop,expected", [
    ("id", "mde_id"),
    ("computerDnsName", "mde_computer_dns_name"),
    ("lastExternalIpAddress", "mde_last_external_ip_address"),
    ("osBuild", "mde_os_build"),
    ("isAadJoined", "mde_is_aad_joined"),
    ("aadDeviceId", "mde_aad_device_id"),
    ("rbacGroupId", "mde_rbac_group_id"),
    ("vmMetadata", "mde_vm_metadata"),
    ("machineTags", "mde_machine_tags"),
])
def test_var_names(prop, expected):
    assert plugin_module.var_name(prop) == expected


def test_verify_file(tmp_path):
    plugin = inventory_loader.get("defender.endpoint.mde_machines")
    for name, ok in (("mde.yml", True), ("prod.mde.yaml", True), ("x_mde_machines.yml", True),
                     ("mde_machines.yaml", True), ("inventory.yml", False), ("mde.json", False)):
        (tmp_path / name).write_text("plugin: defender.endpoint.mde_machines\n")
        assert plugin.verify_file(str(tmp_path / name)) is ok, name
    assert plugin.verify_file(str(tmp_path / "missing-mde.yml")) is False


def test_defaults_onboarded_names_and_hostvars(tmp_path, api):
    api.machines = [machine(0), machine(1, computerDnsName=None)]
    run = parse(tmp_path, {})
    assert api.calls == [dict(path="/api/machines", odata_filter="onboardingStatus eq 'Onboarded'", empty_on_404=True)]
    assert api.created[0]["client_secret"] == "s3cret-value"
    assert api.created[0]["tenant_id"] == "contoso.onmicrosoft.com"
    # null computerDnsName falls through to the id
    assert run.hosts == sorted(["ws-00000.contoso.local", "%040x" % 2])
    hv = run.vars("ws-00000.contoso.local")
    assert hv["mde_id"] == "%040x" % 1
    assert hv["mde_os_platform"] == "Windows11"
    assert hv["mde_machine_tags"] == ["Finance"]
    assert hv["mde_last_ip_address"] == "10.0.0.1"
    assert hv["mde_ip_addresses"][0]["ipAddress"] == "10.0.0.1"
    assert hv["mde_is_aad_joined"] is True
    assert not [k for k in hv if k.startswith("mde_") and k[4:] != k[4:].lower()]
    assert run.warnings == []


def test_filters_are_one_server_side_filter(tmp_path, api):
    api.machines = [machine(0), machine(1, rbacGroupName="Servers"), machine(2, rbacGroupName=None)]
    run = parse(tmp_path, {"filters": {"os_platform": ["Windows11", "WindowsServer2022"], "health_status": "Active",
                                       "exposure_level": "High", "risk_score": ["High", "Medium"],
                                       "machine_tags": "Finance", "rbac_group_name": "servers",
                                       "onboarding_status": ["Onboarded", "CanBeOnboarded"]},
                           "odata_filter": "osBuild ge 19045"})
    expr = api.calls[0]["odata_filter"]
    assert "(osPlatform eq 'Windows11' or osPlatform eq 'WindowsServer2022')" in expr
    assert "healthStatus eq 'Active'" in expr
    assert "exposureLevel eq 'High'" in expr
    assert "(riskScore eq 'High' or riskScore eq 'Medium')" in expr
    assert "machineTags/any(t: t eq 'Finance')" in expr
    assert "(onboardingStatus eq 'Onboarded' or onboardingStatus eq 'CanBeOnboarded')" in expr
    assert expr.endswith(" and (osBuild ge 19045)")
    assert "rbac" not in expr
    # rbac_group_name is matched client-side (case-insensitively)
    assert run.hosts == ["ws-00001.contoso.local"]


def test_onboarding_status_empty_reads_every_device(tmp_path, api):
    api.machines = [machine(0, onboardingStatus="CanBeOnboarded")]
    run = parse(tmp_path, {"filters": {"onboarding_status": []}})
    assert api.calls[0]["odata_filter"] is None
    assert run.hosts == ["ws-00000.contoso.local"]


def test_last_seen_within(tmp_path, api):
    parse(tmp_path, {"filters": {"last_seen_within": "7d"}})
    expr = api.calls[0]["odata_filter"]
    assert expr.startswith("onboardingStatus eq 'Onboarded' and lastSeen ge ")
    since = datetime.datetime.strptime(expr.rsplit(" ", 1)[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    expected = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=7)
    assert abs((since - expected).total_seconds()) < 60


def test_exclude_filters(tmp_path, api):
    api.machines = [machine(0), machine(1, machineTags=["Decommissioned"]), machine(2, osPlatform="Linux"),
                    machine(3, osPlatform="Linux", healthStatus="Inactive")]
    run = parse(tmp_path, {"exclude_filters": [{"machine_tags": "decommissioned"},
                                               {"os_platform": "Linux", "health_status": ["Inactive"]}]})
    assert "Decommissioned" not in api.calls[0]["odata_filter"]
    assert run.hosts == ["ws-00000.contoso.local", "ws-00002.contoso.local"]


@pytest.mark.parametrize("config,message", [
    ({"filters": {"os": "Linux"}}, "filters: unknown filter os"),
    ({"filters": {"health_status": "Healthy"}}, "filters.health_status: 'Healthy' is not one of Active"),
    ({"filters": {"last_seen_within": "a week"}}, "last_seen_within must be an ISO 8601 time"),
    ({"exclude_filters": [{"risk_score": "Severe"}]}, "exclude_filters[0].risk_score: 'Severe' is not one of"),
    ({"hostnames": ["name"]}, "hostnames: 'name' is neither one of computer_dns_name"),
])
def test_bad_options_make_no_api_call(tmp_path, api, config, message):
    with pytest.raises(AnsibleError) as e:
        parse(tmp_path, config)
    assert message in str(e.value)
    assert api.created == [] and api.calls == []


def test_api_error_is_one_line(tmp_path, api):
    api.error = MDEError("GET /api/machines failed: HTTP 403 Forbidden (Forbidden): Missing application roles. The "
                         "Entra ID application needs the WindowsDefenderATP application permission Machine.Read.All "
                         "or Machine.ReadWrite.All, granted with admin consent.", status=403)
    with pytest.raises(AnsibleError) as e:
        parse(tmp_path, {})
    text = str(e.value)
    assert text.startswith("defender.endpoint.mde_machines: GET /api/machines failed: HTTP 403")
    assert "\n" not in text and "s3cret" not in text


def test_config_error_before_any_request(tmp_path, monkeypatch):
    # the real factory: a missing credential is reported before any network call
    for name in list(os.environ):
        if name.startswith(("MDE_", "AZURE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MDE_TENANT_ID", "contoso.onmicrosoft.com")
    monkeypatch.setenv("MDE_CLIENT_ID", "app-id")
    with pytest.raises(AnsibleError) as e:
        parse(tmp_path, {"api_url": "https://127.0.0.1:9"})
    assert "No credential given" in str(e.value)


def test_duplicate_names_most_recent_wins(tmp_path, api):
    old = machine(1, computerDnsName="dup.contoso.local", lastSeen="2026-01-10T08:00:00Z")
    new = machine(2, computerDnsName="dup.contoso.local", lastSeen="2026-01-30T08:00:00.5Z")
    older = machine(3, computerDnsName="dup.contoso.local", lastSeen=None)
    api.machines = [old, new, older]
    run = parse(tmp_path, {})
    assert run.hosts == ["dup.contoso.local"]
    assert run.vars("dup.contoso.local")["mde_id"] == new["id"]
    assert len(run.warnings) == 2
    assert old["id"] in run.warnings[0] and new["id"] in run.warnings[0] and "dup.contoso.local" in run.warnings[0]
    assert older["id"] in run.warnings[1]


def test_time_key_orders_mixed_precision():
    key = plugin_module.time_key
    assert key("2026-01-30T08:00:00Z") < key("2026-01-30T08:00:00.1Z") < key("2026-01-30T08:00:00.1234567Z")
    assert key(None) < key("2020-01-01T00:00:00Z")
    assert key("2026-01-30T09:00:00+01:00") == key("2026-01-30T08:00:00Z")


def test_hostnames_preferences_and_template(tmp_path, api):
    api.machines = [machine(0), machine(1, lastIpAddress=None, computerDnsName="b.contoso.local")]
    run = parse(tmp_path, {"hostnames": ["last_ip_address", "{{ mde_computer_dns_name | split('.') | first }}"]})
    assert run.hosts == ["10.0.0.1", "b"]


def test_constructable(tmp_path, api):
    api.machines = [machine(0, machineTags=["Finance", "VIP"]),
                    machine(1, osPlatform="Linux", rbacGroupName=None, exposureLevel="High", machineTags=[])]
    run = parse(tmp_path, {
        "compose": {"ansible_host": "mde_last_ip_address",
                    "ansible_connection": "'psrp' if mde_os_platform.startswith('Windows') else 'ssh'"},
        "groups": {"windows": "mde_os_platform.startswith('Windows')"},
        "keyed_groups": [{"key": "mde_os_platform", "prefix": "os"},
                         {"key": "mde_machine_tags", "prefix": "tag"},
                         {"key": "mde_rbac_group_name", "prefix": "rbac", "default_value": "ungrouped"},
                         {"key": "ansible_connection", "prefix": "conn"},
                         {"key": "mde_exposure_level"}],
        "leading_separator": False,
    })
    w, lx = "ws-00000.contoso.local", "ws-00001.contoso.local"
    assert run.vars(w)["ansible_host"] == "10.0.0.1"
    assert run.vars(w)["ansible_connection"] == "psrp"
    assert run.vars(lx)["ansible_connection"] == "ssh"
    assert run.group("windows") == [w]
    assert run.group("os_Windows11") == [w] and run.group("os_Linux") == [lx]
    assert run.group("tag_Finance") == [w] and run.group("tag_VIP") == [w]
    assert run.group("rbac_The_A_Team") == [w] and run.group("rbac_ungrouped") == [lx]
    assert run.group("conn_ssh") == [lx]
    assert run.group("High") == [lx] and "_High" not in run.inventory.groups


def test_strict_compose_error(tmp_path, api):
    api.machines = [machine(0)]
    with pytest.raises(AnsibleError):
        parse(tmp_path, {"compose": {"x": "mde_no_such_var.upper()"}, "strict": True})
    run = parse(tmp_path, {"compose": {"x": "mde_no_such_var.upper()"}})
    assert "x" not in run.vars("ws-00000.contoso.local")


def test_auth_options_may_be_templates(tmp_path, api):
    parse(tmp_path, {"client_secret": "{{ 'from' ~ '-template' }}", "timeout": 12})
    assert api.created[0]["client_secret"] == "from-template"
    assert api.created[0]["timeout"] == 12


def test_environment_value_is_not_templated(tmp_path, api, monkeypatch):
    monkeypatch.setenv("MDE_CLIENT_SECRET", "{{ 7 * 6 }}")
    parse(tmp_path, {})
    assert api.created[0]["client_secret"] == "{{ 7 * 6 }}"


def test_cache_hit_makes_no_call_and_holds_no_secret(tmp_path, api):
    cache_dir = tmp_path / "cache"
    api.machines = [machine(0), machine(1)]
    config = {"cache": True, "cache_plugin": "ansible.builtin.jsonfile", "cache_connection": str(cache_dir),
              "keyed_groups": [{"key": "mde_os_platform", "prefix": "os"}]}
    first = parse(tmp_path, config)
    assert len(api.calls) == 1
    files = os.listdir(str(cache_dir))
    assert len(files) == 1
    text = (cache_dir / files[0]).read_text()
    assert "s3cret" not in text and "app-id" not in text
    payload = json.loads(text)
    payload = json.loads(payload["__payload__"]) if "__payload__" in payload else payload  # ansible-core >= 2.19
    assert sorted(payload) == ["machines", "query"]
    assert [m["id"] for m in payload["machines"]] == [machine(0)["id"], machine(1)["id"]]

    api.machines = []
    second = parse(tmp_path, config)
    assert len(api.calls) == 1 and len(api.created) == 1  # no client, no token, no request
    assert second.hosts == first.hosts and second.group("os_Windows11") == first.hosts

    # --flush-cache (cache=False) reads the API again and stores what it read
    third = parse(tmp_path, config, cache=False)
    assert len(api.calls) == 2 and third.hosts == []

    # other filters: the cached copy is not used
    api.machines = [machine(5)]
    fourth = parse(tmp_path, dict(config, filters={"exposure_level": "High"}))
    assert len(api.calls) == 3 and fourth.hosts == ["ws-00005.contoso.local"]


def test_many_machines_many_duplicates_warn_in_summary(tmp_path, api):
    api.machines = [machine(i, computerDnsName="same-%d" % (i % 50), lastSeen="2026-01-01T00:00:%02dZ" % (i // 50))
                    for i in range(200)]
    run = parse(tmp_path, {})
    assert len(run.hosts) == 50
    assert run.vars("same-7")["mde_id"] == machine(157)["id"]
    assert len(run.warnings) == plugin_module.MAX_DUPLICATE_WARNINGS + 1
    assert "130 more machines are left out" in run.warnings[-1]


def test_one_tenant_whose_answer_cannot_be_read_leaves_the_others_listed(tmp_path, api, monkeypatch):
    """Whatever goes wrong reading one tenant (here an answer the plugin cannot handle), that tenant is left out with
    one warning and the other tenants are listed; fail_on_tenant_error fails the source instead."""
    good = Recorder([machine(0), machine(1)])
    broken = Recorder()
    broken.error = TypeError("string indices must be integers\x1b[2J")
    clients = {"11111111-1111-1111-1111-111111111111": good, "22222222-2222-2222-2222-222222222222": broken}
    monkeypatch.setattr(client_module, "create_client", lambda **options: clients[options["tenant_id"]])
    config = {"tenants": [{"tenant_id": "11111111-1111-1111-1111-111111111111", "name": "contoso"},
                          {"tenant_id": "22222222-2222-2222-2222-222222222222", "name": "fabrikam"}], "cache": False}
    run = parse(tmp_path, config)
    assert run.hosts == ["ws-00000.contoso.local", "ws-00001.contoso.local"]
    left_out = [w for w in run.warnings if "tenant fabrikam" in w]
    assert len(left_out) == 1 and "its answer could not be read (TypeError" in left_out[0], run.warnings
    assert "\x1b" not in left_out[0]
    with pytest.raises(AnsibleError) as err:
        parse(tmp_path, dict(config, fail_on_tenant_error=True))
    assert "tenant fabrikam" in str(err.value) and "tenant contoso" not in str(err.value)


def test_no_device_takes_another_tenants_renamed_host_by_renaming_itself(tmp_path, api, monkeypatch):
    """fabrikam's web01 is the host web01_fabrikam (contoso's web01 was seen first). A contoso device that names
    itself web01_fabrikam does not take that host: a name ending in another tenant's label is kept for that tenant's
    renamed hosts, and the device is web01_fabrikam_contoso, with a warning."""
    contoso_id, fabrikam_id = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"
    contoso = Recorder([machine(0, computerDnsName="web01", firstSeen="2025-01-01T00:00:00Z"),
                        machine(1, computerDnsName="web01_fabrikam", firstSeen="2024-01-01T00:00:00Z")])
    fabrikam = Recorder([machine(2, computerDnsName="web01", firstSeen="2026-01-01T00:00:00Z")])
    clients = {contoso_id: contoso, fabrikam_id: fabrikam}
    monkeypatch.setattr(client_module, "create_client", lambda **options: clients[options["tenant_id"]])
    run = parse(tmp_path, {"tenants": [{"tenant_id": contoso_id, "name": "contoso"},
                                       {"tenant_id": fabrikam_id, "name": "fabrikam"}], "cache": False})
    owner = dict((host, (run.vars(host)["mde_tenant"], run.vars(host)["mde_id"])) for host in run.hosts)
    assert owner == {"web01": ("contoso", "%040x" % 1), "web01_fabrikam": ("fabrikam", "%040x" % 3),
                     "web01_fabrikam_contoso": ("contoso", "%040x" % 2)}, owner
    assert any("tenant contoso has a machine named web01_fabrikam" in w and "host web01_fabrikam_contoso" in w
               for w in run.warnings), run.warnings


def test_a_device_name_with_a_c1_control_or_over_255_characters_names_no_host(tmp_path, api):
    api.machines = [machine(0, computerDnsName="ws\x9b2J"), machine(1, computerDnsName="x" * 256),
                    machine(2, computerDnsName="y" * 255)]
    run = parse(tmp_path, {"cache": False})
    # Each falls back to the next host name preference (its machine id); a name of 255 characters is kept.
    assert run.hosts == sorted(["%040x" % 1, "%040x" % 2, "y" * 255])
