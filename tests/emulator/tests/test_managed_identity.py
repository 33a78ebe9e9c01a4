"""Managed identities through real MSAL: the Azure VM (IMDS) and App Service token endpoints."""

import jwt
import msal
import pytest
import requests

from .conftest import Api

MDE = "https://api.securitycenter.microsoft.com"
MI_VARS = ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET",
           "AZURE_POD_IDENTITY_AUTHORITY_HOST")


def _claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def client(emu, identity=None):
    session = requests.Session()
    session.verify = emu.ca_path
    return msal.ManagedIdentityClient(identity or msal.SystemAssignedManagedIdentity(), http_client=session)


@pytest.fixture
def imds(emulator, monkeypatch):
    """MSAL's VM source, pointed at the emulator (never the link-local address)."""
    for name in MI_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", emulator.config()["imds_host"])
    return emulator


@pytest.fixture
def app_service(emulator, monkeypatch):
    for name in MI_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", emulator.config()["identity_endpoint"])
    monkeypatch.setenv("IDENTITY_HEADER", emulator.config()["identity_header"])
    return emulator


def test_imds_system_assigned(imds):
    system = imds.config()["managed_identities"]["system"]
    result = client(imds).acquire_token_for_client(resource=MDE)
    assert "access_token" in result, result
    claims = _claims(result["access_token"])
    assert claims["appid"] == system["client_id"] and claims["oid"] == system["object_id"] and claims["idtyp"] == "app"
    assert claims["aud"] == MDE and "Machine.Isolate" in claims["roles"] and claims["xms_mirid"] == system["resource_id"]
    entry = imds.log[-1]
    assert (entry["family"], entry["client_id"], entry["status"]) == ("managed_identity", system["client_id"], 200)
    assert imds.counters["token_requests"] == 1
    api = Api(imds, result["access_token"])
    resp = api.post("/api/machines/%s/runAntiVirusScan" % imds.machines[0]["id"], json={"Comment": "mi", "ScanType": "Quick"})
    assert resp.status_code == 201 and resp.json()["requestor"] == system["client_id"]
    resp = requests.get("%s/metadata/identity/oauth2/token" % imds.url, params={"api-version": "2018-02-01", "resource": MDE + "/"},
                        headers={"Metadata": "true"}, verify=imds.ca_path, timeout=10).json()
    assert {"access_token", "client_id", "expires_in", "expires_on", "not_before", "resource", "token_type"} <= set(resp)
    assert isinstance(resp["expires_in"], str) and isinstance(resp["expires_on"], str) and resp["resource"] == MDE + "/"


@pytest.mark.parametrize("selector", ["client_id", "object_id", "resource_id"])
def test_imds_user_assigned(imds, selector):
    automation = imds.config()["managed_identities"]["automation"]
    result = client(imds, msal.UserAssignedManagedIdentity(**{selector: automation[selector]})).acquire_token_for_client(resource=MDE)
    assert _claims(result["access_token"])["appid"] == automation["client_id"]


def test_imds_readonly_identity_and_graph(imds):
    readonly = imds.config()["managed_identities"]["mi_readonly"]
    result = client(imds, msal.UserAssignedManagedIdentity(client_id=readonly["client_id"])).acquire_token_for_client(resource=MDE)
    resp = Api(imds, result["access_token"]).post("/api/machines/%s/isolate" % imds.machines[0]["id"], json={"Comment": "x"})
    assert resp.status_code == 403 and "application permissions (Machine.Isolate)" in resp.json()["error"]["message"]
    graph = client(imds).acquire_token_for_client(resource="https://graph.microsoft.com")
    assert Api(imds, graph["access_token"]).get("/v1.0/security/incidents?$top=1").status_code == 200


def test_imds_errors(imds):
    result = client(imds, msal.UserAssignedManagedIdentity(client_id="00000000-0000-0000-0000-00000000abcd")).acquire_token_for_client(
        resource=MDE)
    assert result == {"error": "invalid_request", "error_description": "Identity not found"}
    result = client(imds).acquire_token_for_client(resource="https://management.azure.com/")
    assert result["error"] == "invalid_resource" and result["error_description"].startswith("AADSTS50001: ")
    url = "%s/metadata/identity/oauth2/token" % imds.url
    resp = requests.get(url, params={"api-version": "2018-02-01", "resource": MDE}, verify=imds.ca_path, timeout=10)
    assert resp.status_code == 400 and resp.json() == {"error": "bad_request_102", "error_description": "Required metadata header not specified"}
    resp = requests.get(url, params={"resource": MDE}, headers={"Metadata": "true"}, verify=imds.ca_path, timeout=10)
    assert resp.status_code == 400 and "api-version was not specified" in resp.json()["error"] and resp.json()["newest-versions"]
    resp = requests.get(url, params={"api-version": "2018-02-01"}, headers={"Metadata": "true"}, verify=imds.ca_path, timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"
    assert all(e["family"] == "managed_identity" for e in imds.log) and imds.counters["token_requests"] == 5


def test_app_service(app_service):
    system = app_service.config()["managed_identities"]["system"]
    automation = app_service.config()["managed_identities"]["automation"]
    result = client(app_service).acquire_token_for_client(resource=MDE)
    assert _claims(result["access_token"])["appid"] == system["client_id"], result
    result = client(app_service, msal.UserAssignedManagedIdentity(resource_id=automation["resource_id"])).acquire_token_for_client(resource=MDE)
    assert _claims(result["access_token"])["appid"] == automation["client_id"]
    assert app_service.log[-1]["query"]["mi_res_id"] == automation["resource_id"]
    assert "x-identity-header" not in str(app_service.log[-1]).lower()
    resp = requests.get(app_service.config()["identity_endpoint"], params={"api-version": "2019-08-01", "resource": MDE},
                        headers={"X-IDENTITY-HEADER": app_service.config()["identity_header"]}, verify=app_service.ca_path, timeout=10)
    body = resp.json()
    assert set(body) == {"access_token", "expires_on", "not_before", "resource", "token_type", "client_id"}
    assert isinstance(body["expires_on"], str) and body["client_id"] == system["client_id"]
    assert Api(app_service, body["access_token"]).get("/api/machines?$top=1").status_code == 200


def test_app_service_errors(app_service, monkeypatch):
    result = client(app_service, msal.UserAssignedManagedIdentity(client_id="00000000-0000-0000-0000-00000000abcd")).acquire_token_for_client(
        resource=MDE)
    assert result["error_description"] == "400, Unable to load the proper Managed Identity."
    monkeypatch.setenv("IDENTITY_HEADER", "wrong-secret")
    result = client(app_service).acquire_token_for_client(resource=MDE)
    assert result["error_description"].startswith("401, ") and "X-IDENTITY-HEADER" in result["error_description"]
    resp = requests.get(app_service.config()["identity_endpoint"], params={"api-version": "2019-08-01", "resource": MDE},
                        verify=app_service.ca_path, timeout=10)
    body = resp.json()
    assert resp.status_code == 401 and body["statusCode"] == 401 and set(body) == {"statusCode", "message", "correlationId"}
    resp = requests.get(app_service.config()["identity_endpoint"], params={"api-version": "2019-08-01", "resource": "https://nope.example"},
                        headers={"X-IDENTITY-HEADER": app_service.config()["identity_header"]}, verify=app_service.ca_path, timeout=10)
    assert resp.status_code == 500 and resp.json()["statusCode"] == 500
