"""The mdatp role, run for real with ansible-playbook on a disposable Debian 12 root.

The host is an overlay over a debootstrap'd minbase Debian (cached under .build/mdatp), reached through chroot(8)
by a test connection plugin (tests/integration/mdatp/connection_plugins). Its APT installs a stand-in ``mdatp``
package (tests/integration/mdatp/mdatp_cli.py, built with dpkg-deb) from a signed repository laid out as
packages.microsoft.com is and served on 127.0.0.1; the role is pointed there with mdatp_repo_base_url only.
The test machine's own packages are never touched (debootstrap is installed when missing).

RPM-based hosts are not run: no RPM distribution's mirror is reachable from the test machine to build a root from.
"""
import json
import os
import subprocess
import time

import pytest
import yaml

from tests.integration import harness
from tests.integration.mdatp import repo

OLD, NEW = "101.24112.0001", "101.25012.0002"
ORG = "7a2f0c1e-5b7d-4c39-9a61-2d4e8f0b1c3a"
HOST = "deb12"


@pytest.fixture(scope="module")
def sensor_host(tmp_path_factory):
    assert os.geteuid() == 0, "the disposable Debian root needs chroot and mount: make test runs as root"
    work = tmp_path_factory.mktemp("mdatp")
    repo.signing_key(str(work / "gnupg"))
    repo.build_repo(str(work / "pmc"), [OLD, NEW], str(work / "gnupg"))
    with repo.serve(str(work / "pmc")) as url, repo.disposable_root(str(work / "host")) as root:
        yield dict(url=url, root=root, work=work,
                   onboarding=repo.onboarding_zip(str(work / "WindowsDefenderATPOnboardingPackage.zip"), ORG),
                   offboarding=repo.offboarding_json(str(work / "mdatp_offboard.json"), ORG))


def playbook(host, check=False, **role_vars):
    work = host["work"]
    role_vars.setdefault("mdatp_repo_base_url", host["url"])
    role_vars.setdefault("mdatp_health_delay", 1)
    role_vars.setdefault("mdatp_health_retries", 3)
    plays = [{"name": "mdatp", "hosts": "sensors", "gather_facts": True, "tasks": [
        {"name": "run mdatp", "ansible.builtin.include_role": {"name": "defender.endpoint.mdatp"}, "vars": role_vars}]}]
    (work / "play.yml").write_text(yaml.safe_dump(plays, sort_keys=False))
    (work / "hosts.ini").write_text("[sensors]\n%s ansible_host=%s ansible_connection=test_chroot "
                                    "ansible_python_interpreter=/usr/bin/python3\n" % (HOST, host["root"]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=harness.COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
               ANSIBLE_STDOUT_CALLBACK="json_results", ANSIBLE_PIPELINING="true", ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(harness.ROOT, "tests", "integration", "callback_plugins"),
               ANSIBLE_CONNECTION_PLUGINS=os.path.join(repo.HERE, "connection_plugins"))
    args = [os.path.join(harness.BIN, "ansible-playbook"), "-i", str(work / "hosts.ini"), str(work / "play.yml")]
    if check:
        args.append("--check")
    started = time.monotonic()
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900, cwd=str(work), check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        data = None
    result = Run(proc, data)
    result.seconds = time.monotonic() - started
    return result


class Run(harness.Result):
    def __repr__(self):
        return "Run(rc=%s) failed: %s\nSTDERR:\n%s" % (self.rc, failure(self) or self.stdout[-3000:], self.stderr[-2000:])


def merged(base, **changes):
    out = dict(base)
    out.update(changes)
    return out


def inside(host, *cmd):
    return subprocess.run(["chroot", host["root"]] + list(cmd), capture_output=True, text=True, check=False)


def read(host, path):
    full = os.path.join(host["root"], path.lstrip("/"))
    return open(full, encoding="utf-8").read() if os.path.exists(full) else None


def changed(result):
    return sorted(name for name, res in tasks(result).items() if res.get("changed"))


def tasks(result):
    """Task name (without the role prefix) -> the host's result."""
    return {name.split(" : ", 1)[-1]: res for name, res in result.tasks(HOST).items()}


def health(result):
    note = tasks(result).get("Note the health")
    assert note, list(tasks(result))
    return note["ansible_facts"]["mdatp_result"]


def failure(result):
    return [res.get("msg") for res in tasks(result).values() if res.get("failed")]


SETTINGS = {"antivirusEngine": {"enforcementLevel": "real_time",
                                "exclusions": [{"$type": "excludedPath", "isDirectory": True, "path": "/var/lib/postgresql"},
                                               {"$type": "excludedFileExtension", "extension": ".bak"}]},
            "edr": {"tags": [{"key": "GROUP", "value": "linux-prod"}]}}


def test_install_onboard_configure_rerun_offboard_remove(sensor_host):
    host = sensor_host
    present = dict(mdatp_onboarding_package=host["onboarding"], mdatp_offboarding_package=host["offboarding"],
                   mdatp_version=OLD, mdatp_hold=True, mdatp_managed_settings=SETTINGS, mdatp_connectivity_test=True,
                   mdatp_proxy="")

    check = playbook(host, check=True, **present)
    assert check.rc == 0, check
    assert read(host, "/etc/apt/sources.list.d/microsoft-prod.list") is None            # check mode wrote nothing
    assert inside(host, "dpkg-query", "-W", "mdatp").returncode != 0

    first = playbook(host, **present)
    assert first.rc == 0, first
    assert read(host, "/etc/apt/sources.list.d/microsoft-prod.list") == (
        "deb [arch=amd64,arm64,armhf signed-by=/usr/share/keyrings/microsoft-prod.asc] %s/debian/12/prod bookworm main\n"
        % host["url"])
    assert "BEGIN PGP PUBLIC KEY BLOCK" in read(host, "/usr/share/keyrings/microsoft-prod.asc")
    assert inside(host, "dpkg-query", "-W", "-f=${Version}", "mdatp").stdout == OLD     # pinned
    assert inside(host, "dpkg", "--get-selections", "mdatp").stdout.split() == ["mdatp", "hold"]
    assert json.loads(json.loads(json.loads(read(host, "/etc/opt/microsoft/mdatp/mdatp_onboard.json"))["onboardingInfo"])["body"])["orgId"] == ORG
    assert json.loads(read(host, "/etc/opt/microsoft/mdatp/managed/mdatp_managed.json")) == SETTINGS
    facts = health(first)
    assert facts["org_id"] == ORG and facts["licensed"] == "true" and facts["healthy"] == "true"
    assert facts["app_version"] == OLD
    calls = read(host, "/var/opt/microsoft/mdatp/calls.log").splitlines()
    assert "connectivity test" in calls and "health --field definitions_status" in calls
    first_seconds = first.seconds

    again = playbook(host, **present)
    assert again.rc == 0, again
    assert changed(again) == [] and again.stats[HOST]["changed"] == 0

    # a settings change (passive mode, another tag) and an upgrade to the newest version, released from the hold
    settings = dict(SETTINGS, antivirusEngine=dict(SETTINGS["antivirusEngine"], enforcementLevel="passive"),
                    edr={"tags": [{"key": "GROUP", "value": "linux-dmz"}]})
    # the repository's server doubles as the HTTP proxy (it serves absolute-URL requests too), so its log shows use
    proxy = host["url"] + "/"
    del repo.Handler.requests[:]
    moved = playbook(host, **merged(present, mdatp_managed_settings=settings, mdatp_version="", mdatp_hold=False,
                                    mdatp_proxy=proxy))
    assert moved.rc == 0, (moved, [r for r in tasks(moved).values() if r.get("failed")])
    assert changed(moved) == ["Hold or release the mdatp package (APT)", "Write the managed settings when they differ"]
    written = json.loads(read(host, "/etc/opt/microsoft/mdatp/managed/mdatp_managed.json"))
    assert written == dict(settings, cloudService={"proxy": proxy})
    assert host["url"] + "/keys/microsoft.asc" in repo.Handler.requests           # the key download went through it
    assert health(moved)["passive_mode_enabled"] == "true"
    assert inside(host, "dpkg", "--get-selections", "mdatp").stdout.split() == ["mdatp", "install"]
    # the installed version satisfies "present": no upgrade without a pin
    assert inside(host, "dpkg-query", "-W", "-f=${Version}", "mdatp").stdout == OLD
    upgraded = playbook(host, **merged(present, mdatp_managed_settings=settings, mdatp_version=NEW, mdatp_hold=False,
                                       mdatp_proxy=proxy))
    assert upgraded.rc == 0, upgraded
    assert changed(upgraded) == ["Install mdatp (APT)"]
    assert inside(host, "dpkg-query", "-W", "-f=${Version}", "mdatp").stdout == NEW

    # unhealthy: one sentence naming what is wrong
    with open(os.path.join(host["root"], "var/opt/microsoft/mdatp/standin.json"), "w", encoding="utf-8") as f:
        json.dump({"definitions_status": "out_of_date", "health_issues": ["no active event provider"]}, f)
    sick = playbook(host, **merged(present, mdatp_managed_settings=settings, mdatp_version=NEW, mdatp_hold=False))
    assert sick.rc != 0
    assert failure(sick) == ["mdatp on deb12 is unhealthy: healthy is false (health issues: no active event provider), "
                             "definitions_status is out_of_date."]
    with open(os.path.join(host["root"], "var/opt/microsoft/mdatp/standin.json"), "w", encoding="utf-8") as f:
        json.dump({"connectivity_errors": ["https://cdn.x.cp.wd.microsoft.com/ping"]}, f)
    offline = playbook(host, **merged(present, mdatp_managed_settings=settings, mdatp_version=NEW, mdatp_hold=False,
                                      mdatp_proxy=proxy))
    assert offline.rc != 0
    assert failure(offline) == ["mdatp connectivity test on deb12 failed for https://cdn.x.cp.wd.microsoft.com/ping."]
    os.unlink(os.path.join(host["root"], "var/opt/microsoft/mdatp/standin.json"))

    # absent: refuses without the offboarding package, then offboards before removing
    refused = playbook(host, mdatp_state="absent")
    assert refused.rc != 0
    assert failure(refused) == ["mdatp on deb12 is onboarded to organisation %s: give mdatp_offboarding_package (from the "
                                "Defender portal) to offboard it before removal, or set mdatp_offboarding_required to "
                                "false." % ORG]
    assert inside(host, "dpkg-query", "-W", "mdatp").returncode == 0

    removed = playbook(host, mdatp_state="absent", mdatp_offboarding_package=host["offboarding"])
    assert removed.rc == 0, removed
    assert "Offboard the host with the offboarding package" in changed(removed)
    assert "Remove mdatp (APT)" in changed(removed)
    calls = read(host, "/var/opt/microsoft/mdatp/calls.log").splitlines()
    assert calls[-1] == "health --field org_id"                     # the last call: the wait for the offboarding
    assert "ok" not in inside(host, "dpkg-query", "-W", "-f=${db:Status-Status}", "mdatp").stdout
    assert not os.path.exists(os.path.join(host["root"], "etc/opt/microsoft/mdatp"))
    assert read(host, "/etc/apt/sources.list.d/microsoft-prod.list") is None

    removed_again = playbook(host, mdatp_state="absent", mdatp_offboarding_package=host["offboarding"])
    assert removed_again.rc == 0, removed_again
    assert removed_again.stats[HOST]["changed"] == 0
    print("mdatp role: first run %.1fs, re-run %.1fs" % (first_seconds, again.seconds))
