"""MDEClient: retries, throttling, 401 refresh, paging and error texts, over a scripted session."""
import json
import types

import pytest
import requests

from ansible_collections.defender.endpoint.plugins.module_utils.client import MDEClient, required_permission
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError

API = "https://api.example.test"


class FakeResponse:
    def __init__(self, status=200, body=None, headers=None, raw=None, reason="OK"):
        self.status_code = status
        self.headers = headers or {}
        self.reason = reason
        if raw is not None:
            self.content = raw.encode()
        elif body is None:
            self.content = b""
        else:
            self.content = json.dumps(body).encode()

    def json(self):
        return json.loads(self.content.decode())


class FakeSession:
    """Answers each request with the next scripted item (a FakeResponse or an exception to raise)."""

    def __init__(self, *script):
        self.script = list(script)
        self.calls = []

    def request(self, method, url, params=None, json=None, headers=None):
        self.calls.append(dict(method=method, url=url, params=dict(params or {}), json=json, headers=headers))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class FakeTokens:
    refreshable = True

    def __init__(self):
        self.tokens = ["tok-1", "tok-2", "tok-3"]
        self.refreshes = 0

    def get_token(self, force_refresh=False):
        if force_refresh:
            self.refreshes += 1
            self.tokens.pop(0)
        return self.tokens[0]

    def describe(self):
        return "client c in tenant t"


def make(*script, **kw):
    sleeps = []
    session = FakeSession(*script)
    tokens = FakeTokens()
    client = MDEClient(API, tokens, session, sleep=sleeps.append, **kw)
    return types.SimpleNamespace(client=client, session=session, tokens=tokens, sleeps=sleeps)


def err(status, code, message, headers=None):
    return FakeResponse(status, {"error": {"code": code, "message": message, "target": "abc"}}, headers=headers,
                        reason={400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
                                500: "Internal Server Error", 503: "Service Unavailable"}.get(status, ""))


def test_get_sends_bearer_token_and_returns_json():
    t = make(FakeResponse(200, {"id": "m1"}))
    assert t.client.get("/api/machines/m1") == {"id": "m1"}
    call = t.session.calls[0]
    assert call["url"] == API + "/api/machines/m1"
    assert call["headers"]["Authorization"] == "Bearer tok-1"


def test_429_waits_for_retry_after_then_succeeds():
    t = make(err(429, "TooManyRequests", "slow down", {"Retry-After": "7"}),
             FakeResponse(201, {"id": "a"}))
    assert t.client.post("/api/machines/m1/isolate", json={"Comment": "x"}) == {"id": "a"}
    assert len(t.session.calls) == 2
    assert 7 <= t.sleeps[0] <= 7.5


def test_429_without_retry_after_backs_off_exponentially():
    t = make(err(429, "TooManyRequests", "x"), err(429, "TooManyRequests", "x"),
             FakeResponse(200, {}), backoff=1.0)
    t.client.get("/api/alerts")
    assert 0.5 <= t.sleeps[0] <= 1.0 and 1.0 <= t.sleeps[1] <= 2.0


def test_retry_after_longer_than_the_collection_waits_fails_at_once_saying_until_when():
    t = make(err(429, "TooManyRequests", "x", {"Retry-After": "3600"}), FakeResponse(200, {}),
             max_retry_after=60)
    with pytest.raises(MDEError) as e:
        t.client.get("/api/alerts")
    assert len(t.session.calls) == 1 and t.sleeps == []
    assert "asks to wait 3600 seconds" in str(e.value) and "longer than the 60 seconds" in str(e.value)
    assert "try again after 20" in str(e.value) and e.value.status == 429


@pytest.mark.parametrize("value", ["0", "-5", "0.01"])
def test_retry_after_of_zero_or_less_still_waits_a_second(value):
    t = make(err(429, "TooManyRequests", "x", {"Retry-After": value}), FakeResponse(200, {}))
    t.client.get("/api/alerts")
    assert 1.0 <= t.sleeps[0] <= 1.5


def test_retry_after_as_an_http_date():
    import email.utils
    import time as _time
    when = email.utils.formatdate(_time.time() + 30, usegmt=True)
    t = make(err(429, "TooManyRequests", "x", {"Retry-After": when}), FakeResponse(200, {}))
    t.client.get("/api/alerts")
    assert 28 <= t.sleeps[0] <= 31


def test_429_gives_up_after_max_attempts_with_clear_error():
    t = make(*[err(429, "TooManyRequests", "quota")] * 3, max_attempts=3)
    with pytest.raises(MDEError) as e:
        t.client.get("/api/alerts")
    assert len(t.session.calls) == 3
    assert e.value.status == 429 and e.value.code == "TooManyRequests"
    assert "GET /api/alerts failed: HTTP 429" in str(e.value)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_retried_for_reads(status):
    t = make(err(status, "InternalServerError", ""), FakeResponse(200, {"value": []}))
    assert t.client.get("/api/machines") == {"value": []}
    assert len(t.session.calls) == 2


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_not_retried_for_a_post_that_could_create_twice(status):
    t = make(err(status, "InternalServerError", "boom"))
    with pytest.raises(MDEError) as e:
        t.client.post("/api/machines/m1/runAntiVirusScan", json={"Comment": "x", "ScanType": "Quick"})
    assert len(t.session.calls) == 1
    assert e.value.status == status


def test_5xx_retried_for_a_post_marked_retry_safe():
    t = make(err(503, "ServiceUnavailable", ""), FakeResponse(200, {"value": []}))
    t.client.post("/api/indicators/import", json={"Indicators": []}, retry_safe=True)
    assert len(t.session.calls) == 2


def test_dropped_connection_retried_for_reads_not_for_unsafe_posts():
    t = make(requests.exceptions.ConnectionError("Connection aborted."), FakeResponse(200, {}))
    t.client.get("/api/machines/m1")
    assert len(t.session.calls) == 2
    t = make(requests.exceptions.ConnectionError("Connection aborted."))
    with pytest.raises(MDEError) as e:
        t.client.post("/api/machines/m1/isolate", json={"Comment": "x"})
    assert len(t.session.calls) == 1
    assert "connection failed" in str(e.value)


def test_connect_timeout_is_always_retried_because_nothing_was_sent():
    t = make(requests.exceptions.ConnectTimeout("connect timed out"), FakeResponse(201, {}))
    t.client.post("/api/machines/m1/isolate", json={"Comment": "x"})
    assert len(t.session.calls) == 2


def test_read_timeout_message():
    t = make(*[requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")] * 2, max_attempts=2)
    with pytest.raises(MDEError) as e:
        t.client.get("/api/machines")
    assert "no answer within the timeout" in str(e.value)


def test_read_timeout_not_repeated_when_asked():
    t = make(requests.exceptions.ReadTimeout("Read timed out."), FakeResponse(200, {}))
    with pytest.raises(MDEError):
        t.client.post("/api/advancedqueries/run", json={"Query": "x"}, retry_safe=True, retry_timeouts=False)
    assert len(t.session.calls) == 1
    t = make(requests.exceptions.ConnectionError("Connection aborted."), FakeResponse(200, {}))
    t.client.post("/api/advancedqueries/run", json={"Query": "x"}, retry_safe=True, retry_timeouts=False)
    assert len(t.session.calls) == 2  # a dropped connection is still repeated


def test_tls_error_points_at_ca_path_and_is_not_retried():
    t = make(requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"))
    with pytest.raises(MDEError) as e:
        t.client.get("/api/machines")
    assert len(t.session.calls) == 1
    assert "ca_path" in str(e.value)


def test_401_on_cached_token_refreshes_once():
    t = make(err(401, "Unauthorized", "expired"), FakeResponse(200, {"ok": 1}))
    assert t.client.get("/api/alerts") == {"ok": 1}
    assert t.tokens.refreshes == 1
    assert t.session.calls[1]["headers"]["Authorization"] == "Bearer tok-2"


def test_second_401_is_an_error():
    t = make(err(401, "Unauthorized", "bad"), err(401, "Unauthorized", "bad"))
    with pytest.raises(MDEError) as e:
        t.client.get("/api/alerts")
    assert t.tokens.refreshes == 1
    assert e.value.status == 401 and "access token was rejected" in str(e.value)


def test_403_names_the_missing_permission():
    t = make(err(403, "Forbidden", "Missing application roles"))
    with pytest.raises(MDEError) as e:
        t.client.post("/api/machines/m1/isolate", json={"Comment": "x"})
    assert e.value.permission == "Machine.Isolate"
    assert "Machine.Isolate" in str(e.value) and "Forbidden" in str(e.value)
    assert "tok-" not in str(e.value)


def test_error_carries_code_message_method_and_path():
    t = make(err(404, "ResourceNotFound", "Machine 123 was not found"))
    with pytest.raises(MDEError) as e:
        t.client.get("/api/machines/123")
    assert (e.value.status, e.value.code, e.value.method, e.value.path) == (404, "ResourceNotFound", "GET",
                                                                            "/api/machines/123")
    assert str(e.value) == "GET /api/machines/123 failed: HTTP 404 Not Found (ResourceNotFound): Machine 123 was not found."


def test_body_that_is_not_json():
    t = make(FakeResponse(200, raw="<html>proxy</html>"), FakeResponse(200, raw="<html>"), max_attempts=2)
    with pytest.raises(MDEError) as e:
        t.client.get("/api/machines")
    assert "not JSON" in str(e.value)


def test_204_returns_none():
    t = make(FakeResponse(204))
    assert t.client.delete("/api/indicators/1") is None


def page(items, link=None):
    body = {"value": items}
    if link:
        body["@odata.nextLink"] = link
    return FakeResponse(200, body)


def test_list_pages_with_top_and_skip_until_a_short_page():
    t = make(page([{"id": 1}, {"id": 2}]), page([{"id": 3}, {"id": 4}]), page([{"id": 5}]))
    assert [m["id"] for m in t.client.list("/api/machines", odata_filter="x eq 'y'", page_size=2)] == [1, 2, 3, 4, 5]
    assert [c["params"].get("$skip") for c in t.session.calls] == [None, 2, 4]
    assert all(c["params"]["$top"] == 2 and c["params"]["$filter"] == "x eq 'y'" for c in t.session.calls)


def test_list_follows_next_link():
    t = make(page([{"id": 1}], API + "/api/machines?$skip=1"), page([{"id": 2}]))
    assert [m["id"] for m in t.client.list("/api/machines", page_size=5)] == [1, 2]
    assert t.session.calls[1]["url"] == API + "/api/machines?$skip=1"


def test_list_refuses_a_next_link_loop():
    link = API + "/api/machines?$skip=1"
    t = make(page([{"id": 1}], link), page([{"id": 2}], link))
    with pytest.raises(MDEError) as e:
        list(t.client.list("/api/machines"))
    assert "already read" in str(e.value)


def test_list_never_sends_the_token_to_another_host():
    t = make(page([{"id": 1}], "https://evil.example/api/machines?$skip=1"))
    with pytest.raises(MDEError) as e:
        list(t.client.list("/api/machines"))
    assert "another host" in str(e.value) and len(t.session.calls) == 1


def test_list_detects_a_server_that_ignores_skip():
    t = make(page([{"id": 1}, {"id": 2}]), page([{"id": 1}, {"id": 2}]))
    with pytest.raises(MDEError):
        list(t.client.list("/api/machines", page_size=2))


def test_list_limit_stops_early_and_asks_for_no_more_than_needed():
    t = make(page([{"id": i} for i in range(3)]))
    assert len(list(t.client.list("/api/machines", limit=3))) == 3
    assert t.session.calls[0]["params"]["$top"] == 3 and len(t.session.calls) == 1


def test_list_machines_404_means_no_recent_machines():
    t = make(err(404, "ResourceNotFound", "No machines found"))
    assert list(t.client.list("/api/machines", empty_on_404=True)) == []
    t = make(err(404, "ResourceNotFound", "x"))
    with pytest.raises(MDEError):
        list(t.client.list("/api/indicators"))


@pytest.mark.parametrize("method,path,permission", [
    ("POST", "/api/machines/abc/restrictCodeExecution", "Machine.RestrictExecution"),
    ("POST", "/api/machines/abc/StopAndQuarantineFile", "Machine.StopAndQuarantine"),
    ("GET", "/api/machines", "Machine.Read.All or Machine.ReadWrite.All"),
    ("PATCH", "/api/alerts/da1", "Alert.ReadWrite.All"),
    ("POST", "/api/alerts/batchUpdate", "Alert.ReadWrite.All"),
    ("GET", "/api/v1.0/alerts", "Alert.Read.All or Alert.ReadWrite.All"),
    ("POST", "/api/advancedqueries/run", "AdvancedQuery.Read.All"),
    ("GET", "/api/machines/SoftwareVulnerabilitiesByMachine", "Vulnerability.Read.All"),
    ("GET", "/api/machines/abc/getmissingkbs", "Software.Read.All"),
])
def test_required_permission(method, path, permission):
    assert required_permission(method, path) == permission


def test_429_with_a_shared_budget_waits_once_through_the_budget(tmp_path):
    from ansible_collections.defender.endpoint.plugins.module_utils.throttle import RateBudget
    now = [100.0]
    budget_sleeps = []

    def budget_sleep(s):
        budget_sleeps.append(s)
        now[0] += s

    budget = RateBudget(str(tmp_path), sleep=budget_sleep, clock=lambda: now[0])
    t = make(err(429, "TooManyRequests", "x", {"Retry-After": "7"}), FakeResponse(201, {"id": "a"}),
             budget=budget, budget_key="host|app")
    assert t.client.post("/api/machines/m1/isolate", json={"Comment": "x"}) == {"id": "a"}
    assert t.sleeps == []  # the client did not sleep on its own ...
    assert 7 <= sum(budget_sleeps) <= 8.1  # ... the budget made it wait, as it makes every other fork
    assert t.client.retries == 1


def test_each_call_settles_its_slot_at_the_answer(tmp_path):
    """A call that took 3 s to answer holds its slot until a minute after the answer; a refused one gives it back."""
    from ansible_collections.defender.endpoint.plugins.module_utils.throttle import RateBudget
    now = [100.0]
    budget = RateBudget(str(tmp_path), sleep=lambda s: None, clock=lambda: now[0])
    t = make(FakeResponse(200, {"id": "m1"}), err(429, "TooManyRequests", "x", {"Retry-After": "1"}),
             budget=budget, budget_key="host|app", max_attempts=1)
    slow = t.session.request

    def request(*args, **kwargs):
        now[0] += 3
        return slow(*args, **kwargs)

    t.session.request = request
    t.client.get("/api/machines/m1")
    with pytest.raises(MDEError):
        t.client.get("/api/machines/m2")
    state = json.loads((tmp_path / "ratelimit.json").read_text())
    assert state["host|app|GET /api/machines/{id}"]["recent"] == [103.0]


# -- hostile or broken answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("link", [
    "https://api.example.test\\@evil.example/api/machines?$skip=1",
    "https://api.example.test@evil.example/api/machines?$skip=1",
    "https://api.example.test.evil.example/api/machines",
    "https://api.example.test:444/api/machines",
    "http://api.example.test/api/machines",
    "https://api.example.test/api/machines?$skip=1\r\nHost: evil",
    "//evil.example/api/machines",
    "/api/machines?$skip=1",
])
def test_list_follows_only_plain_links_onto_its_own_base_url(link):
    t = make(page([{"id": 1}], link), page([{"id": 2}]))
    with pytest.raises(MDEError) as e:
        list(t.client.list("/api/machines"))
    assert len(t.session.calls) == 1, "the token went to %s" % t.session.calls[-1]["url"]
    assert "not following it with the token" in str(e.value)


def test_list_stops_on_empty_pages_that_keep_linking():
    pages = [page([], API + "/api/alerts?$skiptoken=%d" % i) for i in range(50)]
    t = make(page([{"id": 1}], API + "/api/alerts?$skiptoken=x"), *pages)
    with pytest.raises(MDEError) as e:
        list(t.client.list("/api/alerts"))
    assert "3 empty pages in a row" in str(e.value) and len(t.session.calls) == 4


def test_list_caps_the_number_of_pages(monkeypatch):
    from ansible_collections.defender.endpoint.plugins.module_utils import client as client_mod
    monkeypatch.setattr(client_mod, "MAX_PAGES", 4)
    t = make(*[page([{"id": i}], API + "/api/alerts?$skiptoken=%d" % i) for i in range(10)])
    with pytest.raises(MDEError) as e:
        list(t.client.list("/api/alerts"))
    assert "stopped after 4 pages" in str(e.value) and len(t.session.calls) == 4


def test_a_token_with_a_line_break_is_never_sent_nor_printed():
    class Tokens(FakeTokens):
        def get_token(self, force_refresh=False):
            return "eyJsecret-token-value\n"
    session = FakeSession(FakeResponse(200, {}))
    client = MDEClient(API, Tokens(), session, sleep=lambda s: None)
    with pytest.raises(MDEError) as e:
        client.get("/api/machines")
    assert session.calls == [] and "secret-token" not in str(e.value) and "line break" in str(e.value)


def test_a_header_error_names_no_header_value_and_is_not_retried():
    exc = requests.exceptions.InvalidHeader(
        "Invalid leading whitespace, reserved character(s), or return character(s) in header value: "
        "'Bearer tok-1\\r\\nX: y'")
    t = make(exc, FakeResponse(200, {}))
    with pytest.raises(MDEError) as e:
        t.client.get("/api/machines")
    assert len(t.session.calls) == 1 and t.sleeps == []
    assert "tok-1" not in str(e.value) and "Bearer" not in str(e.value)


def test_scrub_removes_bearer_tokens_in_any_form():
    from ansible_collections.defender.endpoint.plugins.module_utils.client import scrub
    text = "header value: 'Bearer eyJhbGciOi.abc.def\\n' and Authorization: bearer xyz"
    out = scrub(text, secrets=("eyJhbGciOi.abc.def\n",))
    assert "eyJhbGciOi" not in out and "xyz" not in out


@pytest.mark.parametrize("value", ["tok\r\nX-Injected: 1", "tok\x00"])
def test_create_client_refuses_control_characters_in_credentials(value):
    from ansible_collections.defender.endpoint.plugins.module_utils.connect import create_client
    from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEConfigError
    with pytest.raises(MDEConfigError) as e:
        create_client(access_token=value, api_url=API, token_cache=False)
    assert "access_token contains a line break" in str(e.value) and "tok" not in str(e.value).replace("token", "")


def test_create_client_strips_a_trailing_newline_and_a_bearer_prefix():
    from ansible_collections.defender.endpoint.plugins.module_utils.connect import create_client
    c = create_client(access_token="Bearer abc.def.ghi\n", api_url=API, token_cache=False)
    assert c.token_provider.get_token() == "abc.def.ghi"


def _dribbling_server(connections):
    """An HTTP server on loopback that answers every request with a body sent one byte every 0.2 s."""
    import socket
    import threading
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(10)

    def serve():
        try:
            while True:
                conn, _addr = srv.accept()
                connections.append(1)
                conn.recv(65536)
                body = b'{"value": []}' + b" " * 87
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                             % len(body))
                try:
                    for i in range(len(body)):
                        conn.sendall(body[i:i + 1])
                        time.sleep(0.2)
                except OSError:
                    pass
                conn.close()
        except OSError:
            return
    import time
    threading.Thread(target=serve, daemon=True).start()
    return srv


def test_a_body_sent_too_slowly_ends_at_the_request_deadline():
    import time
    from ansible_collections.defender.endpoint.plugins.module_utils.client import PinnedSession
    connections = []
    srv = _dribbling_server(connections)
    try:
        url = "http://127.0.0.1:%d" % srv.getsockname()[1]
        client = MDEClient(url, FakeTokens(), PinnedSession(timeout=1, deadline=2), sleep=lambda s: None)
        started = time.monotonic()
        with pytest.raises(MDEError) as e:
            client.get("/api/machines")
        took = time.monotonic() - started
    finally:
        srv.close()
    assert took < 4, "a 20 s body held the request for %.1f s" % took
    assert "did not arrive in full within 2 seconds" in str(e.value)
    assert connections == [1], "not repeated: the server is sending, too slowly"


# -- the version in the User-Agent -----------------------------------------------------------------------------
def test_user_agent_carries_the_version_of_galaxy_yml():
    import os
    import yaml
    from ansible_collections.defender.endpoint.plugins.module_utils import client as client_mod
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
    with open(os.path.join(root, "galaxy.yml")) as f:
        version = str(yaml.safe_load(f)["version"])
    assert client_mod.COLLECTION_VERSION == version, (
        "galaxy.yml says version %s but plugins/module_utils/client.py COLLECTION_VERSION says %s: change both"
        % (version, client_mod.COLLECTION_VERSION))
    assert client_mod.USER_AGENT.endswith("/" + version)
    assert client_mod.PinnedSession().headers["User-Agent"] == client_mod.USER_AGENT


# -- one paging loop: pages() and use_top=False --------------------------------------------------------------
def test_pages_without_top_follow_only_next_links_and_keep_the_params():
    t = make(page([{"id": 1}, {"id": 2}], API + "/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=2&$skiptoken=x"),
             page([{"id": 3}]))
    pages = list(t.client.pages("/api/machines/SoftwareVulnerabilitiesByMachine", params={"pageSize": 2},
                                use_top=False))
    assert pages == [[{"id": 1}, {"id": 2}], [{"id": 3}]]
    assert t.session.calls[0]["params"] == {"pageSize": 2}
    assert t.session.calls[1]["url"].endswith("$skiptoken=x") and t.session.calls[1]["params"] == {}
    assert len(t.session.calls) == 2   # a page without a nextLink is the last, however short


def test_list_without_top_reads_one_plain_get_and_refuses_a_loop():
    t = make(page([{"id": 1}]))
    assert list(t.client.list("/api/machines/abc/getmissingkbs", use_top=False)) == [{"id": 1}]
    assert t.session.calls[0]["params"] == {}
    link = API + "/api/machines/abc/vulnerabilities?$skiptoken=1"
    t = make(page([{"id": 1}], link), page([{"id": 2}], link))
    with pytest.raises(MDEError, match="already read"):
        list(t.client.list("/api/machines/abc/vulnerabilities", use_top=False))


def test_pages_trim_the_last_page_to_the_limit():
    t = make(page([{"id": i} for i in range(5)]))
    assert list(t.client.pages("/api/alerts", limit=3, use_top=False)) == [[{"id": 0}, {"id": 1}, {"id": 2}]]


# -- download(): pre-signed URLs ------------------------------------------------------------------------------
class StreamResponse:
    def __init__(self, status=200, chunks=(), headers=None, reason=None):
        self.status_code = status
        self.reason = reason or {200: "OK", 302: "Found", 403: "Forbidden", 503: "Service Unavailable"}.get(status, "")
        self.headers = headers or {}
        self.chunks = list(chunks)

    def iter_content(self, chunk_size):
        for chunk in self.chunks:
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class StreamSession:
    def __init__(self, *script):
        self.script = list(script)
        self.calls = []
        self.default_timeout = 30
        self.deadline = 120

    def request(self, method, url, **kwargs):
        self.calls.append(dict(method=method, url=url, **kwargs))
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def downloader(*script):
    session = StreamSession(*script)
    sleeps = []
    return MDEClient(API, FakeTokens(), session, sleep=sleeps.append), session, sleeps


SAS = "https://blob.example.test/pkg/p.zip?sv=2024&sig=TOPSECRETSIGNATURE"


def test_download_streams_to_a_private_file_and_returns_its_digest(tmp_path):
    import hashlib
    import os
    import stat
    client, session, _sleeps = downloader(StreamResponse(200, [b"ab", b"", b"cd"]))
    dest = str(tmp_path / "p.zip")
    assert client.download(SAS, dest) == (dest, hashlib.sha256(b"abcd").hexdigest(), 4)
    assert open(dest, "rb").read() == b"abcd" and stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    call, = session.calls
    assert call["url"] == SAS and call["stream"] is True and call["allow_redirects"] is False
    assert "Authorization" not in call["headers"]
    prepared = types.SimpleNamespace(headers={"Authorization": "Basic from-netrc"})
    assert "Authorization" not in call["auth"](prepared).headers   # an auth hook: ~/.netrc is never consulted
    assert client.token_provider.refreshes == 0


def test_download_follows_https_redirects_only(tmp_path):
    client, session, _sleeps = downloader(
        StreamResponse(302, headers={"Location": "https://cdn.example.test/p.zip?sig=OTHERSECRET"}),
        StreamResponse(200, [b"x"]))
    assert client.download(SAS, str(tmp_path / "a.zip"))[2] == 1
    assert session.calls[1]["url"] == "https://cdn.example.test/p.zip?sig=OTHERSECRET"
    client, session, _sleeps = downloader(
        StreamResponse(302, headers={"Location": "http://cdn.example.test/p.zip?sig=OTHERSECRET"}))
    with pytest.raises(MDEError) as e:
        client.download(SAS, str(tmp_path / "b.zip"))
    assert "not a plain https" in str(e.value) and "SECRET" not in str(e.value) and len(session.calls) == 1


def test_download_retries_5xx_and_dropped_connections_then_hides_the_query(tmp_path):
    import os
    client, session, sleeps = downloader(StreamResponse(503), requests.exceptions.ConnectionError(
        "HTTPSConnectionPool(host='blob.example.test'): Max retries exceeded with url: /pkg/p.zip?sv=2024&sig=TOPSECRET"),
        StreamResponse(200, [b"ok"]))
    assert client.download(SAS, str(tmp_path / "p.zip"))[2] == 2
    assert len(session.calls) == 3 and len(sleeps) == 2
    error = requests.exceptions.ConnectionError("Max retries exceeded with url: /pkg/p.zip?sv=2024&sig=TOPSECRET")
    client, session, sleeps = downloader(*[error] * 6)
    with pytest.raises(MDEError) as e:
        client.download(SAS, str(tmp_path / "q.zip"))
    assert "TOPSECRET" not in str(e.value) and "sv=2024" not in str(e.value)
    assert "https://blob.example.test/pkg/p.zip" in str(e.value) and len(session.calls) == 6
    assert os.listdir(tmp_path) == ["p.zip"]


def test_download_403_is_not_retried_and_leaves_nothing(tmp_path):
    import os
    client, session, _sleeps = downloader(StreamResponse(403))
    with pytest.raises(MDEError) as e:
        client.download(SAS, str(tmp_path / "p.zip"), what="the investigation package")
    assert str(e.value) == ("Downloading the investigation package from https://blob.example.test/pkg/p.zip failed: "
                            "HTTP 403 Forbidden.")
    assert e.value.status == 403 and len(session.calls) == 1 and os.listdir(tmp_path) == []


def test_download_ends_at_its_deadline(tmp_path, monkeypatch):
    import os
    from ansible_collections.defender.endpoint.plugins.module_utils import client as client_mod
    clock = iter(range(0, 1000, 50))
    monkeypatch.setattr(client_mod.time, "monotonic", lambda: next(clock))
    client, _session, _sleeps = downloader(StreamResponse(200, [b"a"] * 10))
    with pytest.raises(MDEError, match="did not end within 120 seconds"):
        client.download(SAS, str(tmp_path / "p.zip"))
    assert os.listdir(tmp_path) == []


def test_download_refuses_a_symlink_and_names_a_missing_directory(tmp_path):
    import os
    os.symlink("/etc/passwd", str(tmp_path / "link.zip"))
    client, session, _sleeps = downloader(StreamResponse(200, [b"x"]), StreamResponse(200, [b"x"]))
    with pytest.raises(MDEError, match="symbolic link"):
        client.download(SAS, str(tmp_path / "link.zip"))
    with pytest.raises(MDEError) as e:
        client.download(SAS, str(tmp_path / "missing" / "p.zip"))
    assert "cannot write" in str(e.value) and "SECRET" not in str(e.value)


@pytest.mark.parametrize("value", ["1e308", "inf", "Infinity", "9" * 400])
def test_an_endless_retry_after_fails_at_once_and_blocks_nobody(value, tmp_path):
    from ansible_collections.defender.endpoint.plugins.module_utils.throttle import RateBudget
    now = [1000.0]
    budget_sleeps = []
    budget = RateBudget(str(tmp_path), sleep=budget_sleeps.append, clock=lambda: now[0])
    t = make(err(429, "TooManyRequests", "x", {"Retry-After": value}), FakeResponse(200, {"value": []}),
             budget=budget, budget_key="host|app")
    with pytest.raises(MDEError) as e:
        t.client.get("/api/alerts")
    assert "OverflowError" not in str(e.value) and "a day or more" in str(e.value)
    assert len(t.session.calls) == 1 and t.sleeps == [] and budget_sleeps == []
    # A later call (another fork, the next run) is not held back: no block was recorded for the family.
    t.client.get("/api/alerts")
    assert budget_sleeps == [] and len(t.session.calls) == 2


def test_api_error_text_reaches_the_message_escaped_and_cut():
    hostile = "\x1b[2J\x1b[Hfatal: [localhost]: FAILED!\r\n" + "A" * 5000
    t = make(err(400, "Bad\x1bCode", hostile))
    with pytest.raises(MDEError) as e:
        t.client.post("/api/machines/m1/isolate", json={"Comment": "x"})
    text = str(e.value)
    assert "\x1b" not in text and "\r" not in text and "\n" not in text
    assert "\\x1b[2J" in text and "Bad\\x1bCode" in text
    assert "(cut: %d characters in all)" % len(hostile) in text and len(text) < 2600
    assert "\x1b" not in e.value.api_message and len(e.value.api_message) < 2100


def test_a_download_larger_than_accepted_fails_once_and_leaves_nothing(tmp_path):
    import os
    from ansible_collections.defender.endpoint.plugins.module_utils import client as client_module
    # What arrives counts, whatever the headers say...
    client, session, _sleeps = downloader(StreamResponse(200, [b"x" * 600, b"x" * 600]))
    with pytest.raises(MDEError) as e:
        client.download(SAS, str(tmp_path / "p.zip"), what="the result", max_size=1000)
    assert "larger than the 1000 bytes accepted for the result" in str(e.value)
    assert len(session.calls) == 1 and os.listdir(tmp_path) == []
    # ... and a Content-Length over the cap fails before anything is read.
    client, session, _sleeps = downloader(StreamResponse(200, [b"x"], headers={"Content-Length": "4000000000"}))
    with pytest.raises(MDEError):
        client.download(SAS, str(tmp_path / "p.zip"))
    assert client_module.MAX_DOWNLOAD == 3 * 1024 ** 3 and os.listdir(tmp_path) == []


# -- the one retry decision, as a table ---------------------------------------------------------------------------
def _transport(kind):
    return {"never sent": requests.exceptions.ConnectTimeout("connect timed out"),
            "refused": requests.exceptions.ConnectionError("NewConnectionError: [Errno 111] Connection refused"),
            "dropped": requests.exceptions.ConnectionError("Connection aborted: RemoteDisconnected"),
            "read timeout": requests.exceptions.ReadTimeout("Read timed out."),
            "cut short": requests.exceptions.ChunkedEncodingError("Connection broken"),
            "tls": requests.exceptions.SSLError("certificate verify failed"),
            "bad url": requests.exceptions.InvalidURL("bad")}[kind]


@pytest.mark.parametrize("answer,retry_safe,retry_timeouts,refreshable,verdict", [
    # an HTTP status                           read?  timeouts? refresh?  what it means
    (429, True, True, False, "throttled"),
    (429, False, True, False, "throttled"),      # a 429 was not carried out: a write is sent again too
    (401, True, True, True, "refresh"),
    (401, True, True, False, "fail"),            # refreshed once already
    (403, True, True, True, "fail"),
    (404, False, True, False, "fail"),
    (500, True, True, False, "retry"),
    (503, True, True, False, "retry"),
    (504, True, False, False, "fail"),           # a hunting query that ran out of time is not re-run
    (502, True, False, False, "retry"),
    (500, False, True, False, "ambiguous"),      # a write that may have taken effect
    (504, False, True, False, "ambiguous"),
    (200, True, True, False, "retry"),           # a 2xx whose body is not JSON
    (201, False, True, False, "ambiguous"),
    # a transport error
    ("never sent", False, True, False, "retry"),
    ("refused", False, True, False, "retry"),
    ("dropped", True, True, False, "retry"),
    ("dropped", False, True, False, "ambiguous"),
    ("read timeout", True, True, False, "retry"),
    ("read timeout", True, False, False, "fail"),
    ("read timeout", False, True, False, "ambiguous"),
    ("cut short", False, True, False, "ambiguous"),
    ("tls", True, True, False, "fail"),
    ("tls", False, True, False, "fail"),
    ("bad url", False, True, False, "fail"),
])
def test_what_each_answer_means(answer, retry_safe, retry_timeouts, refreshable, verdict):
    from ansible_collections.defender.endpoint.plugins.module_utils.client import decide
    if isinstance(answer, int):
        got = decide(status=answer, retry_safe=retry_safe, retry_timeouts=retry_timeouts, refreshable=refreshable)
    else:
        got = decide(error=_transport(answer), retry_safe=retry_safe, retry_timeouts=retry_timeouts,
                     refreshable=refreshable)
    assert got == verdict


@pytest.mark.parametrize("method,path,permission", [
    ("GET", "/v1.0/security/rules/detectionRules", "CustomDetection.Read.All or CustomDetection.ReadWrite.All"),
    ("GET", "/beta/security/rules/detectionRules/r1", "CustomDetection.Read.All or CustomDetection.ReadWrite.All"),
    ("POST", "/v1.0/security/rules/detectionRules", "CustomDetection.ReadWrite.All"),
    ("PATCH", "/v1.0/security/rules/detectionRules/r1", "CustomDetection.ReadWrite.All"),
    ("DELETE", "/beta/security/rules/detectionRules/r1", "CustomDetection.ReadWrite.All"),
])
def test_a_detection_rules_403_names_the_custom_detection_permission(method, path, permission):
    assert required_permission(method, path) == permission
    assert required_permission(method, path, delegated=True) == permission   # Graph names both alike
