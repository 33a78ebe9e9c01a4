"""User context: the device code flow, refresh tokens and delegated permissions, driven through real MSAL."""

import threading
import time

import jwt
import msal
import pytest
import requests

from .conftest import Api

MDE = "https://api.securitycenter.microsoft.com/.default"
GRAPH = "https://graph.microsoft.com/.default"
ANALYST = "analyst@contoso.onmicrosoft.com"
RESPONDER = "responder@contoso.onmicrosoft.com"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def _claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def public_app(emu, name="analyst"):
    session = requests.Session()
    session.verify = emu.ca_path
    return msal.PublicClientApplication(emu.apps[name]["client_id"], authority="%s/%s" % (emu.url, emu.tenant_id),
                                        validate_authority=False, instance_discovery=False, http_client=session)


def admin(emu, name, body=None):
    resp = requests.post("%s/_emulator/%s" % (emu.url, name), json=body or {}, verify=emu.ca_path, timeout=10)
    return resp


def _polled(emu):
    return any(e["family"] == "token" and e["body"].get("grant_type") == DEVICE_GRANT for e in emu.log)


def sign_in(emu, app, scopes, user=None, decline=False):
    """initiate_device_flow, approve through the admin endpoint once the client polls, acquire_token_by_device_flow."""
    flow = app.initiate_device_flow(scopes)
    assert "user_code" in flow, flow
    answers = []

    def approve():
        deadline = time.time() + 10
        while not _polled(emu) and time.time() < deadline:
            time.sleep(0.05)
        answers.append(admin(emu, "devicecode/approve", {"user_code": flow["user_code"], "user": user, "decline": decline}))
    thread = threading.Thread(target=approve)
    thread.start()
    result = app.acquire_token_by_device_flow(flow)
    thread.join()
    assert answers[0].status_code == 200, answers[0].text
    return flow, result


@pytest.fixture
def emu(emulator):
    emulator.configure_device_code(interval=1)
    return emulator


def test_device_code_flow_delegated_token_and_attribution(emu):
    app = public_app(emu)
    flow, result = sign_in(emu, app, [MDE])
    assert flow["verification_uri"] == emu.url + "/devicelogin" and flow["interval"] == 1 and flow["expires_in"] == 900
    assert flow["message"] == ("To sign in, use a web browser to open the page %s/devicelogin and enter the code %s to authenticate."
                               % (emu.url, flow["user_code"]))
    assert "access_token" in result and "refresh_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == ANALYST and result["id_token_claims"]["aud"] == emu.apps["analyst"]["client_id"]
    assert result["id_token_claims"]["iss"] == "%s/%s/v2.0" % (emu.url, emu.tenant_id)
    claims = _claims(result["access_token"])
    assert claims["aud"] == "https://api.securitycenter.microsoft.com" and "roles" not in claims
    assert "Machine.Isolate" in claims["scp"].split() and "Machine.Read" in claims["scp"].split()
    assert claims["upn"] == claims["unique_name"] == ANALYST and claims["name"] == "Alex Analyst"
    assert claims["oid"] == emu.users[ANALYST]["oid"] and claims["appid"] == emu.apps["analyst"]["client_id"]
    assert claims["app_displayname"] == "emulator-analyst" and claims["idtyp"] == "user"
    assert [a["username"] for a in app.get_accounts()] == [ANALYST]
    polls = [e for e in emu.log if e["family"] == "token" and e["body"].get("grant_type") == DEVICE_GRANT]
    assert polls[0]["status"] == 400 and polls[-1]["status"] == 200
    assert polls[-1]["body"]["device_code"] == "REDACTED" and polls[-1]["body"]["code"] == "REDACTED"
    # the user's token works on the API; the Action center shows the analyst as requestor
    api = Api(emu, result["access_token"])
    assert api.get("/api/machines?$top=1").status_code == 200
    machine = emu.find_machines(osPlatform="Windows10", onboardingStatus="Onboarded")[0]
    resp = api.post("/api/machines/%s/isolate" % machine["id"], json={"Comment": "user context", "IsolationType": "Full"})
    assert resp.status_code == 201, resp.text
    assert resp.json()["requestor"] == ANALYST and emu.log[-1]["user"] == ANALYST
    assert emu.log[-1]["client_id"] == emu.apps["analyst"]["client_id"]
    resp = api.post("/api/machineactions/%s/cancel" % resp.json()["id"], json={"Comment": "undo"})
    assert resp.json()["cancellationRequestor"] == ANALYST
    resp = api.post("/api/indicators", json={"indicatorValue": "evil-user.example", "indicatorType": "DomainName", "action": "Block",
                                             "title": "t", "description": "d"})
    assert resp.status_code == 200, resp.text
    assert (resp.json()["createdBy"], resp.json()["source"], resp.json()["sourceType"]) == (ANALYST, ANALYST, "User")


def test_one_sign_in_serves_mde_and_graph(emu):
    app = public_app(emu)
    _flow, result = sign_in(emu, app, [MDE])
    account = app.get_accounts()[0]
    cached = app.acquire_token_silent([MDE], account)
    assert cached["access_token"] == result["access_token"]  # the response's scope names .default: a cache hit
    emu.clear_log()
    graph = app.acquire_token_silent([GRAPH], account)
    assert graph and "access_token" in graph, graph
    (refresh,) = [e for e in emu.log if e["family"] == "token"]
    assert refresh["body"]["grant_type"] == "refresh_token" and refresh["body"]["refresh_token"] == "REDACTED"
    claims = _claims(graph["access_token"])
    assert claims["aud"] == "https://graph.microsoft.com"
    assert set(claims["scp"].split()) == {"ThreatHunting.Read.All", "SecurityIncident.Read.All", "SecurityIncident.ReadWrite.All",
                                          "CustomDetection.Read.All", "CustomDetection.ReadWrite.All"}
    api = Api(emu, graph["access_token"])
    resp = api.patch("/v1.0/security/incidents/1000", json={"status": "inProgress"})
    assert resp.status_code == 200 and resp.json()["lastModifiedBy"] == ANALYST
    resp = api.post("/v1.0/security/incidents/1000/comments", json={"comment": "looking"})
    assert resp.json()["value"][-1]["createdByDisplayName"] == "Alex Analyst"
    assert Api(emu, result["access_token"]).get("/v1.0/security/incidents").status_code == 401  # an MDE token on Graph


def test_readonly_analyst_gets_delegated_403(emu):
    app = public_app(emu, "analyst_readonly")
    _flow, result = sign_in(emu, app, [MDE], user=RESPONDER)
    claims = _claims(result["access_token"])
    assert sorted(claims["scp"].split()) == ["Alert.Read", "Machine.Read"] and claims["upn"] == RESPONDER
    api = Api(emu, result["access_token"])
    assert api.get("/api/alerts?$top=1").status_code == 200
    resp = api.post("/api/machines/%s/isolate" % emu.machines[0]["id"], json={"Comment": "x", "IsolationType": "Full"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "Forbidden"
    assert resp.json()["error"]["message"] == ("The user does not have any of the required delegated permissions (Machine.Isolate) to "
                                               "access the resource.")
    # no Graph consent for this app: the refresh for Graph is refused with AADSTS65001
    graph = app.acquire_token_silent_with_error([GRAPH], app.get_accounts()[0])
    assert graph["error"] == "invalid_grant" and graph["error_codes"] == [65001] and graph["suberror"] == "consent_required"


def test_delegated_special_requirements(emu):
    emu.add_app("viewer", secret=False, public_client=True, delegated=("Machine.Read", "Alert.Read", "SecurityIncident.Read.All"))
    api = Api(emu, emu.user_token_for(ANALYST, "viewer"))
    action_id = "6b9a5f0e-0000-4000-8000-000000000000"
    resp = api.get("/api/machineactions/%s/getPackageUri" % action_id)
    assert resp.status_code == 403 and "(Machine.CollectForensics)" in resp.json()["error"]["message"]
    resp = api.get("/api/machineactions/%s/GetLiveResponseResultDownloadLink(index=0)" % action_id)
    assert resp.status_code == 403 and "(Machine.LiveResponse)" in resp.json()["error"]["message"]
    resp = api.get("/api/machineactions")  # Machine.Read.All / ReadWrite.All -> Machine.Read / ReadWrite
    assert resp.status_code == 200
    resp = api.post("/api/indicators", json={"indicatorValue": "x.example", "indicatorType": "DomainName", "action": "Block",
                                             "title": "t", "description": "d"})
    assert resp.status_code == 403 and "(Ti.ReadWrite)" in resp.json()["error"]["message"]
    full = Api(emu, emu.user_token_for(ANALYST, "analyst"))
    assert full.get("/api/machineactions/%s/getPackageUri" % action_id).status_code == 404  # allowed, no such action
    graph = Api(emu, emu.user_token_for(ANALYST, "viewer", GRAPH))
    assert graph.get("/v1.0/security/incidents?$top=1").status_code == 200
    resp = graph.patch("/v1.0/security/incidents/1000", json={"status": "active"})
    assert resp.status_code == 403 and resp.json()["error"]["message"] == (
        "Missing scope permissions on the request. API requires one of 'SecurityIncident.ReadWrite.All'. Scopes on the request "
        "'SecurityIncident.Read.All'")
    resp = graph.post("/v1.0/security/runHuntingQuery", json={"Query": "DeviceInfo | take 1"})
    assert resp.status_code == 403 and "'ThreatHunting.Read.All'" in resp.json()["error"]["message"]


def _devicecode(emu, app="analyst", scope=MDE + " offline_access openid profile", tenant=None, **extra):
    form = {"client_id": emu.apps[app]["client_id"] if app in emu.apps else app, "scope": scope}
    form.update(extra)
    return requests.post("%s/%s/oauth2/v2.0/devicecode" % (emu.url, tenant or emu.tenant_id), data=form, verify=emu.ca_path, timeout=10)


def _poll(emu, device_code, app="analyst", **extra):
    form = {"grant_type": DEVICE_GRANT, "client_id": emu.apps[app]["client_id"], "device_code": device_code, "client_info": "1"}
    form.update(extra)
    return requests.post("%s/%s/oauth2/v2.0/token" % (emu.url, emu.tenant_id), data=form, verify=emu.ca_path, timeout=10)


def _error(resp, status, error, code):
    body = resp.json()
    assert (resp.status_code, body["error"], body["error_codes"]) == (status, error, [code]), body
    assert body["error_description"].startswith("AADSTS%d: " % code)
    return body


def test_polling_errors(emu):
    code = _devicecode(emu).json()
    _error(_poll(emu, code["device_code"]), 400, "authorization_pending", 70016)
    assert admin(emu, "devicecode/config", {"slow_down": 1}).json()["slow_down"] == 1
    _error(_poll(emu, code["device_code"]), 400, "slow_down", 70016)
    _error(_poll(emu, code["device_code"]), 400, "authorization_pending", 70016)
    _error(_poll(emu, "not-a-device-code"), 400, "bad_verification_code", 70018)
    listed = requests.get(emu.url + "/_emulator/devicecode", verify=emu.ca_path, timeout=10).json()
    assert [(f["user_code"], f["status"], f["app"]) for f in listed] == [(code["user_code"], "pending", "analyst")]
    assert listed[0]["scopes"] == (MDE + " offline_access openid profile").split()
    assert admin(emu, "devicecode/approve", {"decline": True}).json()["status"] == "declined"
    _error(_poll(emu, code["device_code"]), 400, "authorization_declined", 65004)
    assert admin(emu, "devicecode/approve", {}).status_code == 404  # nothing pending any more
    # an expired code
    admin(emu, "devicecode/config", {"expires_in": 1})
    code = _devicecode(emu).json()
    assert code["expires_in"] == 1
    time.sleep(1.2)
    _error(_poll(emu, code["device_code"]), 400, "expired_token", 70019)
    assert admin(emu, "devicecode/approve", {"user_code": code["user_code"]}).status_code == 400
    # a successful raw redemption: client_info, id_token, scope
    admin(emu, "devicecode/config", {"expires_in": 900})
    code = _devicecode(emu).json()
    admin(emu, "devicecode/approve", {"user_code": code["user_code"].lower(), "user": RESPONDER})
    body = _poll(emu, code["device_code"]).json()
    assert {"token_type", "scope", "expires_in", "ext_expires_in", "access_token", "refresh_token", "id_token", "client_info"} <= set(body)
    assert "https://api.securitycenter.microsoft.com/.default" in body["scope"].split() and "openid" in body["scope"].split()
    _error(_poll(emu, code["device_code"]), 400, "bad_verification_code", 70018)  # redeemed once only


def test_msal_declined_and_auto_approve(emu):
    app = public_app(emu)
    _flow, result = sign_in(emu, app, [MDE], decline=True)
    assert result["error"] == "authorization_declined"
    emu.configure_device_code(auto_approve=RESPONDER)
    flow = app.initiate_device_flow([MDE])
    result = app.acquire_token_by_device_flow(flow)
    assert _claims(result["access_token"])["upn"] == RESPONDER
    assert [f["status"] for f in emu.device_flows()] == ["declined"]  # the redeemed flow is gone


def test_client_and_scope_errors(emu):
    _error(_devicecode(emu, scope=MDE + " " + GRAPH), 400, "invalid_scope", 700022)
    _error(_devicecode(emu, scope="https://management.azure.com/.default openid"), 400, "invalid_resource", 500011)
    _error(_devicecode(emu, scope="https://api.securitycenter.microsoft.com/Machine.Nope"), 400, "invalid_scope", 70011)
    _error(_devicecode(emu, app="00000000-0000-0000-0000-000000000001"), 400, "unauthorized_client", 700016)
    _error(_devicecode(emu, tenant="11111111-2222-3333-4444-555555555555"), 400, "invalid_request", 90002)
    # explicit scopes: a consented one works (the token carries every consented permission), an unconsented one is AADSTS65001
    code = _devicecode(emu, app="analyst_readonly", scope="https://api.securitycenter.microsoft.com/Machine.Read openid").json()
    admin(emu, "devicecode/approve", {"user_code": code["user_code"]})
    body = _poll(emu, code["device_code"], app="analyst_readonly").json()
    assert sorted(_claims(body["access_token"])["scp"].split()) == ["Alert.Read", "Machine.Read"] and "refresh_token" not in body
    code = _devicecode(emu, app="analyst_readonly", scope="https://api.securitycenter.microsoft.com/Machine.Isolate").json()
    admin(emu, "devicecode/approve", {"user_code": code["user_code"]})
    assert _error(_poll(emu, code["device_code"], app="analyst_readonly"), 400, "invalid_grant", 65001)["suberror"] == "consent_required"
    # a confidential app without "Allow public client flows": refused once the user signed in
    code = _devicecode(emu, app="full").json()
    _error(_poll(emu, code["device_code"], app="full"), 400, "authorization_pending", 70016)
    admin(emu, "devicecode/approve", {"user_code": code["user_code"]})
    _error(_poll(emu, code["device_code"], app="full"), 401, "invalid_client", 7000218)
    # a public client presenting a secret
    code = _devicecode(emu).json()
    _error(_poll(emu, code["device_code"], client_secret="x"), 401, "invalid_client", 700025)


def test_revoked_and_expired_refresh_tokens(emu):
    app = public_app(emu)
    _flow, result = sign_in(emu, app, [MDE])
    account = app.get_accounts()[0]
    assert admin(emu, "revoke_refresh_tokens", {"user": ANALYST}).json()["revoked"] >= 1
    assert emu.revoke_refresh_tokens(ANALYST) == 0  # nothing usable left
    assert app.acquire_token_silent([MDE], account)["access_token"] == result["access_token"]  # the access token stays valid
    refused = app.acquire_token_silent_with_error([GRAPH], account)
    assert refused["error"] == "invalid_grant" and refused["error_codes"] == [50173]
    _flow, result = sign_in(emu, app, [MDE])  # signing in again gives a working refresh token
    assert "access_token" in app.acquire_token_silent_with_error([GRAPH], app.get_accounts()[0])
    assert emu.revoke_refresh_tokens(expire=True) >= 1
    refused = app.acquire_token_silent_with_error([MDE], app.get_accounts()[0], force_refresh=True)
    assert refused["error"] == "invalid_grant" and refused["error_codes"] == [700082]
    assert "inactive" in refused["error_description"]
    resp = requests.post("%s/%s/oauth2/v2.0/token" % (emu.url, emu.tenant_id), verify=emu.ca_path, timeout=10,
                         data={"grant_type": "refresh_token", "client_id": emu.apps["analyst"]["client_id"], "refresh_token": "bogus",
                               "scope": MDE})
    _error(resp, 400, "invalid_grant", 70000)
    assert admin(emu, "revoke_refresh_tokens", {"user": "nobody@contoso.onmicrosoft.com"}).status_code == 400


def test_devicelogin_page(emu):
    code = _devicecode(emu).json()
    page = requests.get(emu.url + "/devicelogin", verify=emu.ca_path, timeout=10)
    assert page.status_code == 200 and code["user_code"] in page.text and ANALYST in page.text
    bad = requests.post(emu.url + "/devicelogin", data={"otc": "WRONGCODE", "user": ANALYST, "action": "approve"}, verify=emu.ca_path,
                        timeout=10)
    assert bad.status_code == 400 and "That code didn't work" in bad.text
    done = requests.post(emu.url + "/devicelogin", data={"otc": code["user_code"], "user": RESPONDER, "action": "approve"},
                         verify=emu.ca_path, timeout=10)
    assert done.status_code == 200 and "You have signed in to the emulator-analyst application" in done.text
    body = _poll(emu, code["device_code"]).json()
    assert _claims(body["access_token"])["upn"] == RESPONDER
    assert [e["family"] for e in emu.log if e["path"] == "/devicelogin"] == ["devicelogin"] * 3
