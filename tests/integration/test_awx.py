"""AWX / Automation Controller: the credential type's injectors, a job run through ansible-runner the way AWX runs
it (inventory update from the plugin, then the playbook, credentials only in the injected environment), and the
execution environment definition through ansible-builder."""
import json
import os
import shutil
import stat
import subprocess

import pytest
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tests.integration.harness import BIN, COLLECTIONS, ROOT

AWX = os.path.join(ROOT, "extensions", "awx")


def load(name):
    with open(os.path.join(AWX, name)) as f:
        return yaml.safe_load(f)


class Namespace:
    """AWX's TowerNamespace: attribute access for tower.filename.<name>."""


def inject(inputs, directory):
    """Render the credential type's injectors as AWX does (CredentialType.inject_credential): every field in the
    namespace (missing ones from their default, else empty), file templates written to private files first and
    their paths put under tower.filename.<name>, then the env templates. Returns the environment variables."""
    fields = load("credential_type_inputs.yml")["fields"]
    injectors = load("credential_type_injectors.yml")
    namespace = {}
    for field in fields:
        value = inputs.get(field["id"], field.get("default", ""))
        namespace[field["id"]] = value
    sandbox = ImmutableSandboxedEnvironment()
    tower = Namespace()
    for label, template in injectors.get("file", {}).items():
        path = os.path.join(str(directory), "awx-" + label.replace(".", "-"))
        with open(path, "w") as f:
            f.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        if "." in label:
            if not hasattr(tower, "filename"):
                tower.filename = Namespace()
            setattr(tower.filename, label.split(".", 1)[1], path)
        else:
            tower.filename = path
    namespace["tower"] = namespace["awx"] = tower
    return dict((k, sandbox.from_string(v).render(**namespace)) for k, v in injectors["env"].items())


def job_env(emulator, tmp_path, injected):
    """What a job's process sees: the host environment without any MDE_/AZURE_ variable, Ansible's settings, the
    credential's injected variables (the emulator's CA among them: the credential's CA bundle path), and the
    emulator's sign-in host (AWX_TASK_ENV on a real controller)."""
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("MDE_", "AZURE_")))
    cache = tmp_path / "token-cache"
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS,
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_PYTHON_INTERPRETER": os.path.join(BIN, "python"),   # the execution environment's Python
        "ANSIBLE_NOCOLOR": "1",
        "PATH": BIN + os.pathsep + env.get("PATH", ""),
        "MDE_AUTHORITY_HOST": emulator.url,
        "MDE_TOKEN_CACHE_DIR": str(cache),
    })
    env.update(injected)
    return env


def plain(value):
    """Inventory JSON without ansible-core 2.19's trust markers."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return dict((k, plain(v)) for k, v in value.items())
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def api_calls(emulator):
    return [e for e in emulator.log if e["path"].startswith("/api/")]


# -- credential type --------------------------------------------------------------------------------------------
def test_credential_type_is_well_formed():
    inputs = load("credential_type_inputs.yml")
    injectors = load("credential_type_injectors.yml")
    ids = [f["id"] for f in inputs["fields"]]
    assert len(ids) == len(set(ids)) and set(inputs["required"]) <= set(ids)
    secret = {f["id"] for f in inputs["fields"] if f.get("secret")}
    assert secret == {"client_secret", "client_certificate", "client_certificate_password"}
    assert all(f["type"] in ("string", "boolean") and f.get("label") for f in inputs["fields"])
    cloud = next(f for f in inputs["fields"] if f["id"] == "cloud")
    doc = yaml.safe_load(open(os.path.join(ROOT, "plugins", "doc_fragments", "auth.py")).read().split("r'''")[1].split("'''")[0])
    assert cloud["choices"] == doc["options"]["cloud"]["choices"] and cloud["default"] == "global"
    # Every variable it sets is one the modules and the inventory plugin read.
    assert set(injectors["env"]) == {"MDE_TENANT_ID", "MDE_CLIENT_ID", "MDE_CLIENT_SECRET", "MDE_CLIENT_CERTIFICATE_PATH",
                                     "MDE_CLIENT_CERTIFICATE_PASSWORD", "MDE_CLOUD", "MDE_API_URL", "MDE_AUTH_MODE",
                                     "MDE_FEDERATED_TOKEN_FILE", "MDE_GRAPH_URL", "MDE_CA_PATH"}
    # Every sign-in mode but the ready token (a job's credential outlives any token) can be chosen.
    modes = next(f for f in inputs["fields"] if f["id"] == "auth_mode")["choices"]
    assert set(modes) == set(doc["options"]["auth_mode"]["choices"]) - {"access_token"} | {"implied"}
    fragment = open(os.path.join(ROOT, "plugins", "doc_fragments", "auth.py")).read()
    assert all(name in fragment for name in injectors["env"])


def credential_inputs(emulator, app):
    creds = emulator.apps[app]
    inputs = {"tenant_id": emulator.tenant_id, "client_id": creds["client_id"], "api_url": emulator.url,
              "ca_path": emulator.ca_path}
    if creds["client_secret"]:
        inputs["client_secret"] = creds["client_secret"]
    else:
        inputs["client_certificate"] = open(creds["cert_path"]).read()
        if creds["cert_password"]:
            inputs["client_certificate_password"] = creds["cert_password"]
    return inputs


def check_tokens(emulator, app, outputs):
    creds = emulator.apps[app]
    tokens = [e for e in emulator.log if e["family"] == "token"]
    assert tokens and {e["client_id"] for e in tokens} == {creds["client_id"]}
    assert all(("client_assertion" in e["body"]) == (not creds["client_secret"]) for e in tokens)
    assert {e["client_id"] for e in api_calls(emulator)} == {creds["client_id"]}
    secret = creds["client_secret"] or creds["cert_password"]
    assert secret not in outputs                                   # the secret is in no output


@pytest.mark.parametrize("app", ["full", "cert_encrypted"])
def test_injected_environment_alone_authenticates_the_modules(emulator, tmp_path, app):
    inputs = credential_inputs(emulator, app)
    injected = inject(inputs, tmp_path)
    assert injected["MDE_CLOUD"] == "global"                    # the field's default
    if app == "full":
        assert injected["MDE_CLIENT_CERTIFICATE_PATH"] == "" and injected["MDE_CLIENT_SECRET"] == inputs["client_secret"]
    else:
        path = injected["MDE_CLIENT_CERTIFICATE_PATH"]
        assert injected["MDE_CLIENT_SECRET"] == "" and open(path).read() == inputs["client_certificate"]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    playbook = tmp_path / "read.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "read", "defender.endpoint.mde_machine_info": {"machine_name": "ws-00000"}, "register": "found"},
        {"name": "show", "ansible.builtin.debug": {"msg": "{{ found.machines[0].id }}"}}]}]))
    run = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
                         env=job_env(emulator, tmp_path, injected), capture_output=True, text=True,
                         cwd=str(tmp_path), check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert emulator.machines[0]["id"] in run.stdout
    check_tokens(emulator, app, run.stdout + run.stderr)


@pytest.mark.parametrize("app", [
    # A secret-only credential: AWX also injects the unused MDE_CLIENT_CERTIFICATE_PATH, empty.
    "full",
    "cert_encrypted",
])
def test_injected_environment_alone_authenticates_the_inventory_plugin(emulator, tmp_path, app):
    injected = inject(credential_inputs(emulator, app), tmp_path)
    inventory = tmp_path / "mde.yml"
    inventory.write_text("plugin: defender.endpoint.mde_machines\n")
    inv = subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", str(inventory), "--list"],
                         env=job_env(emulator, tmp_path, injected), capture_output=True, text=True,
                         cwd=str(tmp_path), check=False)
    assert inv.returncode == 0, inv.stderr
    assert "ws-00000.contoso.local" in json.loads(inv.stdout)["_meta"]["hostvars"], inv.stderr
    check_tokens(emulator, app, inv.stdout + inv.stderr)


@pytest.mark.parametrize("mode", ["managed_identity", "workload_identity"])
def test_a_credential_without_a_secret_authenticates_jobs_and_inventory(emulator, tmp_path, mode):
    """The sign-in modes that need no secret: a managed identity (the platform's endpoint in the job's environment)
    and workload identity (the AKS webhook's variables in the job's pod, the credential's fields left empty)."""
    injected = inject({"auth_mode": mode, "api_url": emulator.url, "ca_path": emulator.ca_path}, tmp_path)
    assert injected["MDE_AUTH_MODE"] == mode and injected["MDE_TENANT_ID"] == injected["MDE_CLIENT_SECRET"] == ""
    env = job_env(emulator, tmp_path, injected)
    if mode == "managed_identity":
        env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = emulator.url      # IMDS, as MSAL finds it
        expected = emulator.config()["managed_identities"]["system"]["client_id"]
    else:
        app = emulator.apps["workload"]
        token = emulator.federated_token(subject=app["federated"][0]["subject"])
        (tmp_path / "azure-identity-token").write_text(token)
        env.update(AZURE_CLIENT_ID=app["client_id"], AZURE_TENANT_ID=emulator.tenant_id,
                   AZURE_FEDERATED_TOKEN_FILE=str(tmp_path / "azure-identity-token"))
        expected = app["client_id"]
    playbook = tmp_path / "read.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "read", "defender.endpoint.mde_machine_info": {"machine_name": "ws-00000"}}]}]))
    run = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
                         env=env, capture_output=True, text=True, cwd=str(tmp_path), check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    inventory = tmp_path / "mde.yml"
    inventory.write_text("plugin: defender.endpoint.mde_machines\n")
    inv = subprocess.run([os.path.join(BIN, "ansible-inventory"), "-i", str(inventory), "--list"], env=env,
                         capture_output=True, text=True, cwd=str(tmp_path), check=False)
    assert inv.returncode == 0, inv.stderr
    assert "ws-00000.contoso.local" in json.loads(inv.stdout)["_meta"]["hostvars"], inv.stderr
    assert {e["client_id"] for e in api_calls(emulator)} == {expected}


def test_graph_url_and_ca_fields_reach_graph_and_the_api_with_nothing_else_set(emulator, tmp_path):
    """The credential alone (no MDE_CA_PATH or MDE_GRAPH_URL from the job's environment) sends Graph's calls to its
    Graph URL and trusts its CA: pasted as PEM (written to a private file), or a path inside the EE."""
    inputs = credential_inputs(emulator, "full")
    pem = open(emulator.ca_path).read()
    inputs.update(graph_url=emulator.url, ca_bundle=pem, ca_path="")
    injected = inject(inputs, tmp_path)
    assert injected["MDE_GRAPH_URL"] == emulator.url and open(injected["MDE_CA_PATH"]).read() == pem
    assert injected["MDE_CA_PATH"] != emulator.ca_path and stat.S_IMODE(os.stat(injected["MDE_CA_PATH"]).st_mode) == 0o600
    (tmp_path / "by-path").mkdir()
    by_path = inject(dict(credential_inputs(emulator, "full"), graph_url=emulator.url), tmp_path / "by-path")
    assert by_path["MDE_CA_PATH"] == emulator.ca_path
    playbook = tmp_path / "graph.yml"
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "hunt", "defender.endpoint.mde_advanced_hunting": {"query": "DeviceInfo | take 1"}},
        {"name": "incidents", "defender.endpoint.mde_incident_info": {"limit": 1}},
        {"name": "machine", "defender.endpoint.mde_machine_info": {"machine_name": "ws-00000"}}]}]))
    for env_injected in (injected, by_path):
        env = job_env(emulator, tmp_path, env_injected)
        emulator.clear_log()
        run = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
                             env=env, capture_output=True, text=True, cwd=str(tmp_path), check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        paths = [(e["method"], e["path"]) for e in emulator.log]
        assert ("POST", "/v1.0/security/runHuntingQuery") in paths and ("GET", "/v1.0/security/incidents") in paths
        assert ("GET", "/api/machines") in paths


# -- a job through ansible-runner -------------------------------------------------------------------------------
SITE = [
    {"import_playbook": "defender.endpoint.remediate_alerts"},
    {"name": "Contain the VIP machines of the inventory", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Contain", "ansible.builtin.include_role": {"name": "defender.endpoint.contain"},
         "vars": {"contain_machines": "{{ groups['tag_VIP'] }}", "contain_comment": "VIP lockdown"}}]},
]


def test_job_through_ansible_runner_as_awx_runs_it(emulator, tmp_path, monkeypatch):
    import ansible_runner  # tests/requirements-dev.txt pins it
    # A certificate credential: AWX writes the PEM to a private file and points MDE_CLIENT_CERTIFICATE_PATH at it.
    app = emulator.apps["cert_encrypted"]
    injected = inject(credential_inputs(emulator, "cert_encrypted"), tmp_path)
    env = job_env(emulator, tmp_path, injected)
    # ansible-runner starts ansible-playbook from this process' PATH; nothing MDE_* is inherited from it.
    for k in list(os.environ):
        if k.startswith(("MDE_", "AZURE_")):
            monkeypatch.delenv(k)
    monkeypatch.setenv("PATH", env["PATH"])

    # 1. Inventory update: the inventory source (extensions/awx/inventory/mde.yml) through ansible-inventory.
    inv_dir = tmp_path / "inventory-update"
    (inv_dir / "project").mkdir(parents=True)
    shutil.copy(os.path.join(AWX, "inventory", "mde.yml"), str(inv_dir / "project" / "mde.yml"))
    out, err = ansible_runner.get_inventory(action="list", inventories=[str(inv_dir / "project" / "mde.yml")],
                                            response_format="json", envvars=env, quiet=True,
                                            private_data_dir=str(inv_dir))
    assert isinstance(out, dict) and out["_meta"]["hostvars"], err
    # ansible-core 2.19 marks untrusted strings ({"__ansible_unsafe": ...}, profile inventory_legacy); the job's
    # inventory script hands them back as they are, as AWX does.
    assert out["_meta"].get("profile") in (None, "inventory_legacy")
    hostvars = plain(out["_meta"]["hostvars"])
    vip = [h for h, v in hostvars.items() if "VIP" in (v.get("mde_machine_tags") or [])]
    assert vip == ["ws-00000.contoso.local"] and out["tag_VIP"]["hosts"] == vip

    # 2. The job: AWX hands the synced inventory to the job as a script printing that JSON.
    job_dir = tmp_path / "job"
    (job_dir / "project").mkdir(parents=True)
    (job_dir / "inventory").mkdir()
    (job_dir / "project" / "site.yml").write_text(yaml.safe_dump(SITE, sort_keys=False))
    script = job_dir / "inventory" / "hosts"
    script.write_text("#!/bin/sh\ncat <<'EOF'\n%s\nEOF\n" % json.dumps(out))
    script.chmod(0o700)
    emulator.clear_log()
    run = ansible_runner.run(private_data_dir=str(job_dir), playbook="site.yml", inventory=str(script),
                             envvars=env, quiet=True, settings={"suppress_ansible_output": True})
    stdout = run.stdout.read()
    assert (run.status, run.rc) == ("successful", 0), stdout
    assert run.stats["changed"].get("localhost")
    summary = [e["event_data"]["res"]["remediate_alerts_summary"] for e in run.events
               if e.get("event") == "runner_on_ok" and e["event_data"].get("task") == "Show the summary"][0]
    targets = [a for a in emulator.alerts if a["comments"] and a["comments"][-1]["comment"].startswith("Machine isolated")]
    assert sorted(summary["alerts_updated"]) == sorted(a["id"] for a in targets) and targets
    isolated = sorted(w["path"].split("/")[3] for w in emulator.writes() if w["path"].endswith("/isolate"))
    assert isolated == sorted(set(summary["machines_isolated"]) | {emulator.machines[0]["id"]})
    assert emulator.machines[0]["id"] not in summary["machines_isolated"]   # so the second play isolated it
    vip_post = [w for w in emulator.writes() if w["path"] == "/api/machines/%s/isolate" % emulator.machines[0]["id"]]
    assert [w["body"]["Comment"] for w in vip_post] == ["VIP lockdown"]
    assert {e["client_id"] for e in emulator.log if e["path"].startswith("/api/")} == {app["client_id"]}
    assert app["cert_password"] not in stdout


# -- execution environment --------------------------------------------------------------------------------------
def test_both_execution_environments_pin_the_oldest_supported_core():
    runtime = yaml.safe_load(open(os.path.join(ROOT, "meta", "runtime.yml")))
    oldest = runtime["requires_ansible"].lstrip(">=").rsplit(".", 1)[0]
    assert oldest == "2.16"
    for name in ("execution-environment.yml", "execution-environment-local.yml"):
        assert load(name)["dependencies"]["ansible_core"]["package_pip"] == "ansible-core>=" + oldest, name


def test_an_execution_environment_from_a_local_make_collection_tarball(tmp_path):
    """docs/awx.md: make collection, copy the tarball beside execution-environment-local.yml, ansible-builder. The
    build context holds the tarball where the image's galaxy stage (WORKDIR /build, _build copied there) installs it
    from; that install is replayed here from the context, as the stage runs it."""
    builder = shutil.which("ansible-builder", path=BIN)
    clean_env = dict((k, v) for k, v in os.environ.items() if not k.startswith("ANSIBLE_COLLECTIONS"))
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), ROOT],
                   capture_output=True, text=True, check=True, env=clean_env)
    ee_dir = tmp_path / "awx"
    ee_dir.mkdir()
    for name in ("execution-environment-local.yml", "requirements-local.yml"):
        shutil.copy(os.path.join(AWX, name), str(ee_dir / name))
    tarball = [p for p in os.listdir(str(tmp_path)) if p.startswith("defender-endpoint-") and p.endswith(".tar.gz")]
    assert len(tarball) == 1
    shutil.copy(str(tmp_path / tarball[0]), str(ee_dir / "defender-endpoint.tar.gz"))  # the documented cp
    create = subprocess.run([builder, "create", "-f", "execution-environment-local.yml", "-c", str(tmp_path / "context"),
                             "--output-filename", "Containerfile"], capture_output=True, text=True, check=False,
                            cwd=str(ee_dir))
    assert create.returncode == 0, create.stdout + create.stderr
    build = tmp_path / "context" / "_build"
    assert (build / "collections" / "defender-endpoint.tar.gz").is_file()
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    galaxy_stage = containerfile.split("FROM base AS galaxy", 1)[1].split("FROM base AS builder", 1)[0]
    assert "COPY _build /build" in galaxy_stage and "WORKDIR /build" in galaxy_stage
    assert "ansible-galaxy collection install" in galaxy_stage and "-r requirements.yml" in galaxy_stage
    wanted = yaml.safe_load((build / "requirements.yml").read_text())["collections"]
    assert {c["name"] for c in wanted} == {"collections/defender-endpoint.tar.gz", "ansible.windows"}
    # The stage's install of the local collection, from /build (Galaxy's ansible.windows is left out: no network).
    local = tmp_path / "local-requirements.yml"
    local.write_text(yaml.safe_dump({"collections": [c for c in wanted if c.get("type") == "file"]}))
    installed = tmp_path / "usr-share-ansible-collections"
    install = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-r", str(local),
                              "--collections-path", str(installed)], capture_output=True, text=True, check=False,
                             cwd=str(build), env=clean_env)
    assert install.returncode == 0, install.stdout + install.stderr
    manifest = json.load(open(str(installed / "ansible_collections" / "defender" / "endpoint" / "MANIFEST.json")))
    galaxy_yml = yaml.safe_load(open(os.path.join(ROOT, "galaxy.yml")))
    assert manifest["collection_info"]["version"] == galaxy_yml["version"]


def test_ansible_builder_creates_a_context_with_the_collection_requirements(tmp_path):
    builder = shutil.which("ansible-builder", path=BIN)
    assert builder, "ansible-builder is pinned in tests/requirements-dev.txt and installed by make"
    meta = yaml.safe_load(open(os.path.join(ROOT, "meta", "execution-environment.yml")))
    assert meta["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}

    # The EE definition shipped for users, with its galaxy requirements beside it.
    ee_dir = tmp_path / "ee"
    ee_dir.mkdir()
    for name in ("execution-environment.yml", "requirements.yml"):
        shutil.copy(os.path.join(AWX, name), str(ee_dir / name))
    create = subprocess.run([builder, "create", "-f", str(ee_dir / "execution-environment.yml"),
                             "-c", str(tmp_path / "context"), "--output-filename", "Containerfile"],
                            capture_output=True, text=True, check=False, cwd=str(tmp_path))
    assert create.returncode == 0, create.stdout + create.stderr
    build = tmp_path / "context" / "_build"
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    assert {c["name"] for c in galaxy["collections"]} == {"defender.endpoint", "ansible.windows"}
    assert "pywinrm" in (build / "requirements.txt").read_text()
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    assert "ansible-galaxy collection install" in containerfile and "introspect" in containerfile

    # What that build's introspection step finds in the installed collection: msal and requests, and bindep.txt.
    # As in a container build, without the ANSIBLE_COLLECTIONS_* variables that `make test` exports (with them,
    # introspection looks at those paths instead of the one it is given).
    clean_env = dict((k, v) for k, v in os.environ.items() if not k.startswith("ANSIBLE_COLLECTIONS"))
    collections = tmp_path / "collections"
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), ROOT],
                   capture_output=True, text=True, check=True, env=clean_env)
    tarball = next(p for p in os.listdir(str(tmp_path)) if p.endswith(".tar.gz"))
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "--no-deps", "-p", str(collections),
                    str(tmp_path / tarball)], capture_output=True, text=True, check=True, env=clean_env)
    intro = subprocess.run([builder, "introspect", "--sanitize", str(collections)], capture_output=True, text=True,
                           check=False, env=clean_env)
    assert intro.returncode == 0, intro.stderr
    found = yaml.safe_load(intro.stdout)
    python = " ".join(found["python"])
    assert "msal" in python and "requests" in python and "defender.endpoint" in python
    assert any("ca-certificates" in line for line in found["system"])
    installed = collections / "ansible_collections" / "defender" / "endpoint"
    for name in ("requirements.txt", "bindep.txt", "meta/execution-environment.yml"):
        assert (installed / name).is_file(), name
