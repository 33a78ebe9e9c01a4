"""The tenant list the inventory plugin and the event sources take."""
import pytest

from ansible_collections.defender.endpoint.plugins.module_utils import tenants
from ansible_collections.defender.endpoint.plugins.module_utils.connect import create_client
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError

A = "11111111-2222-3333-4444-555555555555"
B = "66666666-7777-8888-9999-000000000000"


def test_an_empty_list_is_one_tenant_as_before():
    assert tenants.parse(None) is None and tenants.parse([]) is None


def test_entries_keep_their_own_options_and_drop_empty_ones():
    parsed = tenants.parse([{"tenant_id": A, "name": "fabrikam"},
                            {"tenant_id": "northwind.onmicrosoft.com", "name": "northwind", "cloud": "gcc", "client_secret": ""}])
    assert parsed == [{"tenant_id": A, "name": "fabrikam"},
                      {"tenant_id": "northwind.onmicrosoft.com", "name": "northwind", "cloud": "gcc"}]
    shared = {"tenant_id": B, "client_id": "x", "cloud": "global"}
    assert tenants.connection(shared, parsed[1]) == {"tenant_id": "northwind.onmicrosoft.com", "client_id": "x", "cloud": "gcc"}


def test_a_tenant_with_its_own_credential_takes_none_of_the_shared_one():
    shared = {"tenant_id": B, "client_id": "shared-app", "client_secret": "provider-secret", "auth_mode": "client_secret",
              "client_certificate_password": None, "cloud": "global"}
    own = tenants.parse([{"tenant_id": A, "name": "northwind", "client_id": "own-app",
                          "client_certificate_path": "/etc/northwind.pem"}])[0]
    assert tenants.connection(shared, own) == {
        "tenant_id": A, "client_id": "own-app", "client_certificate_path": "/etc/northwind.pem", "client_secret": None,
        "auth_mode": None, "client_certificate_password": None, "access_token": None, "federated_token_file": None,
        "cloud": "global"}
    # Another cloud alone, or the shared app's own client id (in any case), is no credential of its own: the shared
    # secret still signs in.
    other = tenants.parse([{"tenant_id": A, "name": "fabrikam", "cloud": "gcc"}])[0]
    assert tenants.connection(shared, other)["client_secret"] == "provider-secret"
    same_app = tenants.parse([{"tenant_id": A, "name": "fabrikam", "client_id": "SHARED-APP"}])[0]
    assert tenants.connection(shared, same_app)["client_secret"] == "provider-secret"


def test_a_tenant_with_its_own_app_but_no_credential_gets_none_of_the_providers():
    """The provider's secret is never sent with a customer's app id: the entry signs in with no credential (and fails
    saying so) rather than with another app's secret."""
    shared = {"tenant_id": B, "client_id": "shared-app", "client_secret": "provider-secret", "auth_mode": None}
    own_app = tenants.parse([{"tenant_id": A, "name": "tailspin", "client_id": "tailspin-app"}])[0]
    out = tenants.connection(shared, own_app)
    assert out["client_id"] == "tailspin-app" and out["client_secret"] is None
    with pytest.raises(MDEError) as err:
        create_client(**out)
    assert "No credential given" in str(err.value)


def test_a_shared_access_token_or_managed_identity_cannot_serve_a_tenant_list():
    """A ready token is for one tenant, and a managed identity has one tenant: shared, either would read the same
    tenant under every label, so the list is refused before anything is read."""
    two = tenants.parse([{"tenant_id": A, "name": "fabrikam"}, {"tenant_id": B, "name": "northwind"}])
    with pytest.raises(ValueError) as err:
        tenants.connections({"tenant_id": B, "access_token": "eyJ.shared.token"}, two)
    assert "tenants entry fabrikam" in str(err.value) and "access token is issued for one tenant" in str(err.value)
    with pytest.raises(ValueError) as err:
        tenants.connections({"tenant_id": B, "client_id": "app", "auth_mode": "managed_identity"}, two)
    assert "managed identity signs in to its own tenant only" in str(err.value)
    # Each entry with its own token, or the identity's own tenant alone, is fine.
    own_tokens = tenants.parse([{"tenant_id": A, "name": "fabrikam", "access_token": "token-a"},
                                {"tenant_id": B, "name": "northwind", "access_token": "token-b"}])
    assert [c["access_token"] for c in tenants.connections({"access_token": "eyJ.shared"}, own_tokens)] == [
        "token-a", "token-b"]
    one_identity = tenants.parse([{"tenant_id": A, "name": "home", "auth_mode": "managed_identity"},
                                  {"tenant_id": B, "name": "northwind", "client_secret": "s"}])
    assert [c["auth_mode"] for c in tenants.connections({"client_id": "app"}, one_identity)] == [
        "managed_identity", None]
    both = tenants.parse([{"tenant_id": A, "name": "home", "auth_mode": "managed_identity"},
                          {"tenant_id": B, "name": "other", "auth_mode": "managed_identity"}])
    with pytest.raises(ValueError) as err:
        tenants.connections({"client_id": "app"}, both)
    assert "at most one entry" in str(err.value)


@pytest.mark.parametrize("value, words", [
    ({"tenant_id": A, "name": "x"}, "must be a list"),
    (["fabrikam"], "tenants[0] must be a dictionary"),
    ([{"name": "fabrikam"}], "tenants[0].tenant_id"),
    ([{"tenant_id": "a/b", "name": "fabrikam"}], "tenants[0].tenant_id"),
    ([{"tenant_id": A, "name": "Fabrikam"}], "tenants[0].name"),
    ([{"tenant_id": A, "name": "fab@rikam"}], "tenants[0].name"),
    ([{"tenant_id": A}], "tenants[0].name"),
    ([{"tenant_id": A, "name": "a"}, {"tenant_id": B, "name": "a"}], "tenants[1].name a is tenants[0]'s too"),
    ([{"tenant_id": A, "name": "a"}, {"tenant_id": A.upper(), "name": "b"}], "tenants[1].tenant_id"),
    ([{"tenant_id": A, "name": "a", "tenants": []}], "unknown key(s) tenants"),
    ([{"tenant_id": A, "name": "a"}, {"tenant_id": B, "name": "b_a"}], "tenants.name b_a ends in _a"),
])
def test_a_bad_list_is_refused_naming_the_entry(value, words):
    with pytest.raises(ValueError) as err:
        tenants.parse(value)
    assert words in str(err.value)


def test_limits_are_kept_per_tenant_and_app(tmp_path, monkeypatch):
    """Two tenants of one multi-tenant app: each has its own budget key, so its own call budget, and its own live
    response session slots (25 per tenant): one tenant's full slots hold back no other tenant's session."""
    from ansible_collections.defender.endpoint.plugins.module_utils import live_response
    from ansible_collections.defender.endpoint.plugins.module_utils.connect import create_client
    monkeypatch.setenv("MDE_TOKEN_CACHE_DIR", str(tmp_path / "cache"))
    common = dict(client_id="66666666-7777-8888-9999-000000000000", client_secret="s", api_url="https://api.example.test",
                  graph_url="https://graph.example.test", authority_host="https://login.example.test")
    first, second = [create_client(tenant_id=tenant, **common) for tenant in (A, B)]
    assert first.budget_key != second.budget_key
    assert A in first.budget_key and B in second.budget_key and A in first.graph.budget_key
    held = live_response.SessionSlot(first, limit=1)
    held.acquire(timeout=0)
    assert held.token
    other = live_response.SessionSlot(second, limit=1)
    other.acquire(timeout=0)  # would wait (and fail at once) if the tenants shared the slots
    assert other.token and other.key != held.key
    again = live_response.SessionSlot(first, limit=1)
    with pytest.raises(MDEError) as err:
        again.acquire(timeout=0)
    assert "live response sessions" in str(err.value)
