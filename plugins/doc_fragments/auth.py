# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # The shared connection and credential options of every module (defender.endpoint.auth).
    DOCUMENTATION = r'''
options:
  tenant_id:
    description:
      - The Entra ID directory (tenant) ID, a GUID or a domain such as C(contoso.onmicrosoft.com).
      - Required unless O(access_token) is set or O(auth_mode=managed_identity).
      - If not set, the first of the environment variables E(MDE_TENANT_ID), E(AZURE_TENANT_ID) and E(AZURE_TENANT) is used.
    type: str
  client_id:
    description:
      - The application (client) ID of the Entra ID app registration that holds the WindowsDefenderATP application permissions.
      - With O(auth_mode=device_code), the public client application that holds the delegated permissions; with
        O(auth_mode=managed_identity), the client ID of a user-assigned managed identity (unset for the system-assigned one).
      - Required unless O(access_token) is set or O(auth_mode=managed_identity).
      - If not set, E(MDE_CLIENT_ID) or E(AZURE_CLIENT_ID) is used.
    type: str
  client_secret:
    description:
      - A client secret of the app registration.
      - Exactly one of O(client_secret), O(client_certificate_path) and O(access_token) must be given.
      - If not set, E(MDE_CLIENT_SECRET), E(AZURE_CLIENT_SECRET) or E(AZURE_SECRET) is used.
    type: str
  client_certificate_path:
    description:
      - Path on the controller to a PEM file holding the app's certificate and its private key.
      - The SHA-256 thumbprint sent to Entra ID is computed from the certificate.
      - If not set, E(MDE_CLIENT_CERTIFICATE_PATH) or E(AZURE_CLIENT_CERTIFICATE_PATH) is used.
    type: path
  client_certificate_password:
    description:
      - The password of an encrypted private key in O(client_certificate_path).
      - If not set, E(MDE_CLIENT_CERTIFICATE_PASSWORD) or E(AZURE_CLIENT_CERTIFICATE_PASSWORD) is used.
    type: str
  access_token:
    description:
      - A ready bearer token for the Defender for Endpoint API, for example a user-context token obtained elsewhere.
      - MSAL is not used and nothing is cached. When the token expires, requests fail with HTTP 401.
      - If not set, E(MDE_ACCESS_TOKEN) is used.
    type: str
  auth_mode:
    description:
      - How to sign in to Entra ID. When not set, the credential given decides. O(client_secret) means
        V(client_secret), O(client_certificate_path) V(client_certificate), O(access_token) V(access_token), and
        O(federated_token_file) alone V(workload_identity). So a play written for one of them needs no change.
      - V(client_secret), V(client_certificate) and V(workload_identity) sign in as the application (application
        context, the C(roles) claim, application permissions). V(workload_identity) uses the token in
        O(federated_token_file) (AKS workload identity, GitHub Actions, any OIDC issuer trusted by the app's
        federated identity credential) as the client assertion, read afresh for every new token, so no secret at all.
      - V(device_code) signs in as a user (user context, delegated permissions in the C(scp) claim, actions
        attributed to that analyst in the Action center). O(client_id) is a public client application. The first
        run shows "To sign in, use a web browser to open ... and enter the code ..." on the controller's display
        (standard error) and waits (up to 15 minutes) while the user signs in, with multifactor authentication as the tenant
        requires. MSAL's token cache, refresh token included, is kept in the private token cache (O(token_cache)),
        so later tasks, every fork and later runs sign in silently until the refresh token expires or is revoked.
        Username and password sign-in (ROPC) is not offered, as it cannot do multifactor authentication and Microsoft
        advises against it.
      - V(managed_identity) uses the managed identity of the Azure VM, AKS node, App Service or Arc-enabled server
        the controller runs on, through MSAL, either the system-assigned identity, or the user-assigned one whose client
        ID is O(client_id). No secret and no O(tenant_id).
      - Options that belong to another mode are ignored when O(auth_mode) is set.
      - If not set, E(MDE_AUTH_MODE) is used.
    type: str
    choices: [client_secret, client_certificate, access_token, device_code, managed_identity, workload_identity]
  federated_token_file:
    description:
      - Path on the controller to a file holding a federated (OIDC) token, for O(auth_mode=workload_identity).
      - The file is read again for each new access token, as the platform replaces the token in it (hourly on AKS).
      - If not set, E(MDE_FEDERATED_TOKEN_FILE) or E(AZURE_FEDERATED_TOKEN_FILE) is used (the variable the AKS
        workload identity webhook sets).
    type: path
  cloud:
    description:
      - The Microsoft cloud of the tenant. It sets the API host, the sign-in authority and the token scope.
      - V(global) is the commercial cloud; V(gcc), V(gcc_high) and V(dod) are the US Government clouds.
      - If not set, E(MDE_CLOUD) is used.
    type: str
    choices: [global, gcc, gcc_high, dod]
    default: global
  api_url:
    description:
      - The base URL of the Defender for Endpoint API, without C(/api); requests go to C({api_url}/api/...).
      - Defaults to the host of O(cloud), for example C(https://api.security.microsoft.com). Set it to use a
        regional host such as C(https://eu.api.security.microsoft.com).
      - The token scope always follows O(cloud), whatever this says.
      - If not set, E(MDE_API_URL) is used.
    type: str
  graph_url:
    description:
      - The base URL of Microsoft Graph, without C(/v1.0); Graph requests (advanced hunting, incidents) go to
        C({graph_url}/v1.0/security/...).
      - Defaults to the Graph host of O(cloud) (V(global) and V(gcc) C(https://graph.microsoft.com), V(gcc_high)
        C(https://graph.microsoft.us), V(dod) C(https://dod-graph.microsoft.us)).
      - The Graph token is requested for the Graph resource of O(cloud) (C(<graph host>/.default)), whatever this says.
      - If not set, E(MDE_GRAPH_URL) is used.
    type: str
  authority_host:
    description:
      - The Entra ID sign-in host. Defaults to the one of O(cloud).
      - When it is not a Microsoft host, MSAL instance discovery and authority validation are turned off.
      - If not set, E(MDE_AUTHORITY_HOST) or E(AZURE_AUTHORITY_HOST) is used.
    type: str
  validate_certs:
    description:
      - Whether to verify the TLS certificates of the API and of the sign-in host.
      - Set to V(false) only for testing.
      - If not set, E(MDE_VALIDATE_CERTS) is used.
    type: bool
    default: true
  ca_path:
    description:
      - A PEM bundle of CA certificates to verify the API and sign-in hosts with, instead of the system ones.
      - An explicit O(ca_path) wins over E(REQUESTS_CA_BUNDLE) and E(CURL_CA_BUNDLE); without it those variables are honoured.
      - If not set, E(MDE_CA_PATH) is used.
    type: path
  timeout:
    description:
      - Seconds to wait for each HTTP request.
      - If not set, E(MDE_TIMEOUT) is used.
    type: int
    default: 30
  token_cache:
    description:
      - Whether to share access tokens between module runs through a file cache on the controller, so that
        a play asks Entra ID for a token once rather than once per task and host.
      - The cache is C(~/.cache/defender.endpoint/tokens.json) (or under E(XDG_CACHE_HOME), or in E(MDE_TOKEN_CACHE_DIR));
        its directory must be mode 0700 and the file mode 0600, owned by the user, or the module refuses to use it.
      - It holds access tokens only, never a secret; with O(auth_mode=device_code), also MSAL's token cache of the
        signed-in user (C(user_tokens.json), refresh token included, mode 0600). With V(false), nothing is kept, and with
        O(auth_mode=device_code) every task on every host asks for a sign-in of its own.
      - The same directory holds the call budget that parallel module runs share (C(ratelimit.json)), so that
        C(forks) pace themselves under the API's rate limits. With V(false), each run paces only its own calls
        and parallel forks meet HTTP 429 more often (still retried after C(Retry-After)).
      - If not set, E(MDE_TOKEN_CACHE) is used.
    type: bool
    default: true
notes:
  - >-
    The module runs on the controller, in the worker process of its task, whatever host the play targets: it never
    connects to that host, so a task works as written in a play over remote hosts, without C(delegate_to) or
    C(connection: local). Its Python requirements are needed only where C(ansible-playbook) runs (the execution
    environment in AWX). The C(environment) keyword of the task or play (for example C(HTTPS_PROXY)) applies to it.
  - C(async) is not supported; use the module's own waiting options, or C(forks).
  - Use C(module_defaults) with the action group C(group/defender.endpoint.mde) to set the credentials once for a play.
  - A task that sets a credential of its own (O(client_secret), O(client_certificate_path), O(access_token) or
    O(federated_token_file)), or an app of its own (a O(client_id) other than C(MDE_CLIENT_ID)), takes none of the
    credential options from the environment (for example the C(MDE_CLIENT_SECRET) of an AWX credential), so a
    tenant's own app given by the inventory's host variables is used alone, and another app's secret is never sent
    with its client id (a task that names its own app but no credential fails as having none).
  - Throttling (HTTP 429) is retried after the C(Retry-After) the API sends; server errors and dropped connections
    are retried for reads and for writes that cannot be applied twice.
requirements:
  - python >= 3.9
  - requests
  - msal >= 1.29.0 (unless O(access_token) is used)
'''

    # The same shared options for the mde_machines inventory plugin (defender.endpoint.auth.inventory). An inventory
    # plugin reads its environment variables through the configuration system, so they are declared with env:.
    INVENTORY = r'''
options:
  tenant_id:
    description:
      - The Entra ID directory (tenant) ID, a GUID or a domain such as C(contoso.onmicrosoft.com).
      - Required unless O(access_token) is set or O(auth_mode=managed_identity).
      - May be a Jinja template.
    type: str
    env:
      - name: MDE_TENANT_ID
      - name: AZURE_TENANT_ID
      - name: AZURE_TENANT
  client_id:
    description:
      - The application (client) ID of the Entra ID app registration that holds the WindowsDefenderATP application permissions.
      - With O(auth_mode=device_code), the public client application; with O(auth_mode=managed_identity), the client
        ID of a user-assigned managed identity (unset for the system-assigned one).
      - Required unless O(access_token) is set or O(auth_mode=managed_identity).
      - May be a Jinja template.
    type: str
    env:
      - name: MDE_CLIENT_ID
      - name: AZURE_CLIENT_ID
  client_secret:
    description:
      - A client secret of the app registration.
      - Exactly one of O(client_secret), O(client_certificate_path) and O(access_token) must be given.
      - May be a Jinja template, for example a lookup of HashiCorp Vault or a variable from a vault file given with C(-e @file).
    type: str
    env:
      - name: MDE_CLIENT_SECRET
      - name: AZURE_CLIENT_SECRET
      - name: AZURE_SECRET
  client_certificate_path:
    description:
      - Path on the controller to a PEM file holding the app's certificate and its private key.
      - The SHA-256 thumbprint sent to Entra ID is computed from the certificate.
    type: path
    env:
      - name: MDE_CLIENT_CERTIFICATE_PATH
      - name: AZURE_CLIENT_CERTIFICATE_PATH
  client_certificate_password:
    description:
      - The password of an encrypted private key in O(client_certificate_path).
      - May be a Jinja template.
    type: str
    env:
      - name: MDE_CLIENT_CERTIFICATE_PASSWORD
      - name: AZURE_CLIENT_CERTIFICATE_PASSWORD
  access_token:
    description:
      - A ready bearer token for the Defender for Endpoint API, for example a user-context token obtained elsewhere.
      - MSAL is not used and nothing is cached. When the token expires, requests fail with HTTP 401.
      - May be a Jinja template.
    type: str
    env:
      - name: MDE_ACCESS_TOKEN
  auth_mode:
    description:
      - How to sign in to Entra ID; see the modules' O(auth_mode) for each mode. When not set, the credential given
        decides, so nothing existing changes.
      - With V(device_code), a sign-in needed by the inventory is shown on standard error (never on the standard output
        that C(ansible-inventory --list) writes its JSON to) while the inventory waits; the sign-in is then shared with
        the playbook's tasks through the token cache.
      - One of V(client_secret), V(client_certificate), V(access_token), V(device_code), V(managed_identity) and
        V(workload_identity); an empty value (as AWX sets an unused field) is unset.
    type: str
    env:
      - name: MDE_AUTH_MODE
  federated_token_file:
    description:
      - Path on the controller to a federated (OIDC) token file, for O(auth_mode=workload_identity).
    type: path
    env:
      - name: MDE_FEDERATED_TOKEN_FILE
      - name: AZURE_FEDERATED_TOKEN_FILE
  cloud:
    description:
      - The Microsoft cloud of the tenant. It sets the API host, the sign-in authority and the token scope.
      - V(global) is the commercial cloud; V(gcc), V(gcc_high) and V(dod) are the US Government clouds.
    type: str
    choices: [global, gcc, gcc_high, dod]
    default: global
    env:
      - name: MDE_CLOUD
  api_url:
    description:
      - The base URL of the Defender for Endpoint API, without C(/api); requests go to C({api_url}/api/...).
      - Defaults to the host of O(cloud), for example C(https://api.security.microsoft.com). Set it to use a
        regional host such as C(https://eu.api.security.microsoft.com).
      - The token scope always follows O(cloud), whatever this says.
    type: str
    env:
      - name: MDE_API_URL
  graph_url:
    description:
      - The base URL of Microsoft Graph, without C(/v1.0). Defaults to the Graph host of O(cloud).
      - The Graph token is requested for the Graph resource of O(cloud), whatever this says.
    type: str
    env:
      - name: MDE_GRAPH_URL
  authority_host:
    description:
      - The Entra ID sign-in host. Defaults to the one of O(cloud).
      - When it is not a Microsoft host, MSAL instance discovery and authority validation are turned off.
    type: str
    env:
      - name: MDE_AUTHORITY_HOST
      - name: AZURE_AUTHORITY_HOST
  validate_certs:
    description:
      - Whether to verify the TLS certificates of the API and of the sign-in host.
      - Set to V(false) only for testing.
    type: bool
    default: true
    env:
      - name: MDE_VALIDATE_CERTS
  ca_path:
    description:
      - A PEM bundle of CA certificates to verify the API and sign-in hosts with, instead of the system ones.
      - An explicit O(ca_path) wins over E(REQUESTS_CA_BUNDLE) and E(CURL_CA_BUNDLE); without it those variables are honoured.
    type: path
    env:
      - name: MDE_CA_PATH
  timeout:
    description:
      - Seconds to wait for each HTTP request.
    type: int
    default: 30
    env:
      - name: MDE_TIMEOUT
  token_cache:
    description:
      - Whether to share access tokens with other runs through a file cache on the controller.
      - The cache is C(~/.cache/defender.endpoint/tokens.json) (or under E(XDG_CACHE_HOME), or in E(MDE_TOKEN_CACHE_DIR));
        its directory must be mode 0700 and the file mode 0600, owned by the user, or it is refused.
      - It holds access tokens only, never a secret (with O(auth_mode=device_code), also the user's refresh token in
        C(user_tokens.json), mode 0600). It is not the inventory cache (O(cache)), which holds machines only.
    type: bool
    default: true
    env:
      - name: MDE_TOKEN_CACHE
requirements:
  - python >= 3.9
  - requests
  - msal >= 1.29.0 (unless O(access_token) is used)
'''
