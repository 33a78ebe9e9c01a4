"""Several tenants: a multi-tenant app consented in some of them, each tenant with its own data and limits."""

import jwt
import msal
import pytest
import requests

from tests.emulator.emulator import Emulator

from .conftest import SCOPE


@pytest.fixture(scope="module")
def msp(tmp_path_factory):
    emu = Emulator(state_dir=tmp_path_factory.mktemp("msp"), machines=6, seed=1, rate_limit_scale=0.02,
                   tenants=["fabrikam", {"name": "adatum", "consent": ()}])
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def _msp_ca(msp, monkeypatch):  # pylint: disable=redefined-outer-name
    # MSAL's session would let the variables (set for the session emulator) override its verify.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", msp.ca_path)
    monkeypatch.setenv("CURL_CA_BUNDLE", msp.ca_path)


def token(emu, tenant, app="full"):
    info = emu.apps[app]
    client = msal.ConfidentialClientApplication(info["client_id"], client_credential=info["client_secret"],
                                                authority="%s/%s" % (emu.url, tenant), instance_discovery=False,
                                                validate_authority=False, verify=emu.ca_path)
    return client.acquire_token_for_client([SCOPE])


def get(emu, tok, path):
    return requests.get(emu.url + path, headers={"Authorization": "Bearer %s" % tok}, verify=emu.ca_path, timeout=30)


def test_each_tenant_answers_with_its_own_machines_and_its_own_tenant_id(msp):
    msp.reset()
    fabrikam = msp.tenant_id_of("fabrikam")
    home = token(msp, msp.tenant_id)["access_token"]
    theirs = token(msp, fabrikam)["access_token"]
    assert jwt.decode(theirs, options={"verify_signature": False})["tid"] == fabrikam
    ours = {m["computerDnsName"] for m in get(msp, home, "/api/machines").json()["value"]}
    other = {m["computerDnsName"] for m in get(msp, theirs, "/api/machines").json()["value"]}
    assert "ws-00000.contoso.local" in ours and "ws-00000.fabrikam.local" in other
    assert not (ours & other) - {None}  # a machine with no DNS name is seeded in each
    alert = get(msp, theirs, "/api/alerts?$top=1").json()["value"][0]
    assert alert["aadTenantId"] == fabrikam
    assert [e["tenant"] for e in msp.log if e["path"] == "/api/machines"] == [msp.tenant_id, fabrikam]
    assert msp.log_of("fabrikam")[-1]["path"] == "/api/alerts"


def test_a_tenant_without_consent_fails_as_entra_id_does(msp):
    msp.reset()
    result = token(msp, msp.tenant_id_of("adatum"))
    assert result["error"] == "invalid_client" and result["error_codes"] == [7000229], result
    assert msp.apps["full"]["client_id"] in result["error_description"]
    # A single-tenant app asked for in another tenant is not found there.
    result = token(msp, msp.tenant_id_of("fabrikam"), app="readonly")
    assert result["error_codes"] == [700016], result


def test_revoked_consent_refuses_new_tokens_and_reset_restores_it(msp):
    msp.reset()
    msp.consent("fabrikam", "full", revoke=True)
    assert token(msp, "fabrikam.onmicrosoft.com")["error_codes"] == [7000229]
    msp.reset()
    assert "access_token" in token(msp, "fabrikam.onmicrosoft.com")


def test_a_throttled_tenant_does_not_hold_back_another(msp):
    msp.reset()
    home = token(msp, msp.tenant_id)["access_token"]
    theirs = token(msp, msp.tenant_id_of("fabrikam"))["access_token"]
    statuses = [get(msp, home, "/api/machines").status_code for _attempt in range(101)]
    assert statuses[-1] == 429 and statuses.count(200) == 100
    assert get(msp, theirs, "/api/machines").status_code == 200
