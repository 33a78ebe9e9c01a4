"""TLS: certificates are verified by default; an unknown CA fails with a message that says so and points
at ca_path; ca_path and REQUESTS_CA_BUNDLE both work, an explicit ca_path wins over a wrong REQUESTS_CA_BUNDLE;
validate_certs: false works; an http:// api_url is refused unless MDE_ALLOW_HTTP=true allows it.
"""
import http.server
import os
import threading

import pytest
import requests

INFO = "defender.endpoint.mde_machine_info"
PLUGIN = "defender.endpoint.mde_machines"


def _unrelated_bundle():
    """A CA bundle that does not hold the emulator's CA, as a corporate REQUESTS_CA_BUNDLE would be: made here, so
    the tests need nothing from the machine."""
    import tempfile
    import trustme
    path = os.path.join(tempfile.mkdtemp(prefix="mde-unrelated-ca-"), "ca.pem")
    trustme.CA().cert_pem.write_to_path(path)
    return path


SYSTEM_BUNDLE = _unrelated_bundle()
UNKNOWN_CA = {"MDE_CA_PATH": None, "REQUESTS_CA_BUNDLE": SYSTEM_BUNDLE, "CURL_CA_BUNDLE": SYSTEM_BUNDLE}
TLS_FAILURE = "TLS certificate verification failed"


def read(name, **args):
    args.setdefault("limit", 2)
    return {"name": name, INFO: args, "ignore_errors": True}


def ok(result, name):
    res = result.task(name)
    assert not res.get("failed"), (name, res.get("msg"))
    assert len(res["machines"]) == 2
    return res


def failed(result, name, *fragments):
    res = result.task(name)
    assert res.get("failed") is True, (name, res)
    for fragment in fragments:
        assert fragment in res["msg"], (fragment, res["msg"])
    return res["msg"]


def test_verification_by_default_and_the_ways_to_trust_a_ca(ansible, emulator):
    token = emulator.token_for("full")
    first = ansible.playbook(env=UNKNOWN_CA, tasks=[
        # validate_certs is not set: it defaults to true, so the emulator's CA, unknown to the bundle, is refused
        read("unknown CA, token endpoint"),
        read("unknown CA, API", access_token=token, client_secret=""),
        # an explicit ca_path wins over a REQUESTS_CA_BUNDLE that lacks the CA
        read("ca_path", ca_path=emulator.ca_path),
        read("validate_certs false", validate_certs=False),
    ])
    assert "Traceback" not in first.stdout + first.stderr
    for name in ("unknown CA, token endpoint", "unknown CA, API"):
        msg = failed(first, name, TLS_FAILURE, "Set ca_path")
        assert "CERTIFICATE_VERIFY_FAILED" in msg or "certificate verify failed" in msg
    assert "Entra ID token endpoint" in first.task("unknown CA, token endpoint")["msg"]
    assert first.task("unknown CA, API")["msg"].startswith("GET /api/machines failed: ")
    ok(first, "ca_path")
    ok(first, "validate_certs false")
    # the refused handshakes sent nothing: the log holds the two successful tasks' requests only
    tokens = [e for e in emulator.log if e["family"] == "token"]
    lists = [e for e in emulator.log if e["path"] == "/api/machines"]
    assert len(tokens) == 1 and len(lists) == 2 and all(e["status"] == 200 for e in tokens + lists)

    # REQUESTS_CA_BUNDLE holding the emulator's CA, no ca_path: trusted too
    emulator.clear_log()
    second = ansible.playbook(env={"MDE_CA_PATH": None, "REQUESTS_CA_BUNDLE": emulator.ca_path,
                                   "CURL_CA_BUNDLE": None, "MDE_TOKEN_CACHE": "false"},
                              tasks=[read("REQUESTS_CA_BUNDLE")])
    ok(second, "REQUESTS_CA_BUNDLE")
    assert [e["family"] for e in emulator.log if e["family"] == "token"] == ["token"]


def test_inventory_verifies_certificates(ansible, emulator):
    env = dict(UNKNOWN_CA, ANSIBLE_INVENTORY_UNPARSED_FAILED="true", ANSIBLE_INVENTORY_ENABLED=PLUGIN)
    refused = ansible.inventory({"plugin": PLUGIN}, env=env)
    assert refused.rc != 0
    assert "Traceback" not in refused.stderr
    assert refused.said(TLS_FAILURE) and refused.said("Set ca_path")
    assert emulator.log == []
    trusted = ansible.inventory({"plugin": PLUGIN, "ca_path": emulator.ca_path}, env=env)
    assert trusted.rc == 0, trusted
    assert len(trusted.data["_meta"]["hostvars"]) > 40


class _Forwarder(http.server.BaseHTTPRequestHandler):
    """A plain-HTTP front of the emulator: what a test server without TLS looks like."""
    upstream = ca_path = None
    seen = []

    def _forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        self.seen.append((self.command, self.path))
        headers = dict((k, v) for k, v in self.headers.items() if k.lower() in ("authorization", "content-type", "accept"))
        resp = requests.request(self.command, self.upstream + self.path, data=body, headers=headers,
                                verify=self.ca_path, timeout=30)
        self.send_response(resp.status_code)
        self.send_header("Content-Type", resp.headers.get("Content-Type", "application/json"))
        self.send_header("Content-Length", str(len(resp.content)))
        self.end_headers()
        self.wfile.write(resp.content)

    do_GET = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, *args):  # pylint: disable=arguments-differ
        pass


@pytest.fixture
def http_front(emulator):
    handler = type("Forwarder", (_Forwarder,), {"upstream": emulator.url, "ca_path": emulator.ca_path, "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1], handler.seen
    server.shutdown()
    server.server_close()


def test_http_api_url_only_when_explicitly_allowed(ansible, emulator, http_front):
    url, seen = http_front
    refused = ansible.playbook(tasks=[read("http api_url", api_url=url)])
    failed(refused, "http api_url", "api_url must be an https:// URL, got '%s'." % url)
    assert seen == [] and emulator.log == []  # refused before any request, not even for a token

    for value in ("false", "no"):
        still = ansible.playbook(env={"MDE_ALLOW_HTTP": value}, tasks=[read("http api_url", api_url=url)])
        failed(still, "http api_url", "api_url must be an https:// URL")
    assert seen == [] and emulator.log == []

    allowed = ansible.playbook(env={"MDE_ALLOW_HTTP": "true"}, tasks=[
        read("http api_url", api_url=url),
        # the allowance is for the API only: the token endpoint stays https (the client secret travels there)
        read("http authority_host", api_url=url, authority_host=url, token_cache=False),
    ])
    ok(allowed, "http api_url")
    failed(allowed, "http authority_host", "authority_host must be an https:// URL")
    assert [p.split("?")[0] for m, p in seen] == ["/api/machines"]
    assert [e["path"] for e in emulator.log if e["family"] == "machines"] == ["/api/machines"]
