"""A tenant Entra ID does not know: the message leads with the tenant and what to check, Entra ID's words after."""
from ansible_collections.defender.endpoint.plugins.module_utils import auth


def test_aadsts90002_from_the_token_endpoint_leads_with_the_tenant():
    error = auth._refused("client c1 in tenant contoso.example", {  # pylint: disable=protected-access
        "error": "invalid_request",
        "error_description": "AADSTS90002: Tenant 'contoso.example' not found. Check to make sure you have the "
                             "correct tenant ID and are signing into the correct cloud.\r\nTrace ID: 1"})
    text = str(error)
    assert text.startswith("Tenant contoso.example was not found by Entra ID: check that tenant_id (MDE_TENANT_ID) is "
                           "your tenant's Directory (tenant) ID, or one of its domains, and that cloud (or "
                           "authority_host) names the cloud the tenant is in. Entra ID refused a token to client c1 in "
                           "tenant contoso.example: invalid_request: AADSTS90002: Tenant 'contoso.example' not found."), text
    assert error.code == "invalid_request"


def test_other_refusals_are_unchanged():
    result = {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}
    text = str(auth._refused("client c1", result))  # pylint: disable=protected-access
    assert text == "Entra ID refused a token to client c1: invalid_client: AADSTS7000215: Invalid client secret provided"
