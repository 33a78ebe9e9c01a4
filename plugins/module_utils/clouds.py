# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-cloud endpoints of Microsoft Defender for Endpoint.

Plain Python: no Ansible import. The commercial API host and scope are Microsoft's documented ones
(https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-list); the US Government API hosts and
sign-in authorities are from https://learn.microsoft.com/en-us/defender-endpoint/gov; the gov scopes are not
stated by Microsoft and follow what public clients use (the commercial resource for GCC, the .us resource for
GCC High and DoD).

Microsoft Graph hosts per national cloud: https://learn.microsoft.com/en-us/graph/deployments (GCC uses the global
service; GCC High graph.microsoft.us; DoD dod-graph.microsoft.us). The Graph token is asked for ``<graph host>/.default``
of the cloud, whatever ``graph_url`` says, as the Defender scope follows the cloud.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported by this collection
    from urlparse import urlsplit  # type: ignore


CLOUDS = {
    "global": {
        "api_url": "https://api.security.microsoft.com",
        "authority_host": "https://login.microsoftonline.com",
        "scope": "https://api.securitycenter.microsoft.com/.default",
        "graph_url": "https://graph.microsoft.com",
    },
    "gcc": {
        "api_url": "https://api-gcc.securitycenter.microsoft.us",
        "authority_host": "https://login.microsoftonline.com",
        "scope": "https://securitycenter.onmicrosoft.com/windowsatpservice/.default",
        "graph_url": "https://graph.microsoft.com",
    },
    "gcc_high": {
        "api_url": "https://api-gov.securitycenter.microsoft.us",
        "authority_host": "https://login.microsoftonline.us",
        "scope": "https://securitycenter.onmicrosoft.us/windowsatpservice/.default",
        "graph_url": "https://graph.microsoft.us",
    },
    "dod": {
        "api_url": "https://api-gov.securitycenter.microsoft.us",
        "authority_host": "https://login.microsoftonline.us",
        "scope": "https://securitycenter.onmicrosoft.us/windowsatpservice/.default",
        "graph_url": "https://dod-graph.microsoft.us",
    },
}

# Sign-in hosts that Microsoft's instance discovery knows. Any other authority host (a private
# endpoint, a test emulator) is used with instance discovery and authority validation turned off.
MICROSOFT_AUTHORITY_HOSTS = frozenset([
    "login.microsoftonline.com",
    "login.microsoftonline.us",
    "login.microsoft.com",
    "login.windows.net",
    "login.chinacloudapi.cn",
    "login.partner.microsoftonline.cn",
])


def cloud_names():
    return sorted(CLOUDS)


def resolve(cloud="global", api_url=None, authority_host=None):
    """Return ``(api_url, authority_host, scope)`` for a cloud, with explicit overrides applied.

    The scope always follows the cloud, whatever ``api_url`` says: a token is minted for the
    Defender resource, not for the host the requests happen to go to.
    """
    try:
        entry = CLOUDS[cloud or "global"]
    except KeyError:
        raise ValueError("cloud must be one of %s, got %r" % (", ".join(cloud_names()), cloud))
    return (
        (api_url or entry["api_url"]).rstrip("/"),
        (authority_host or entry["authority_host"]).rstrip("/"),
        entry["scope"],
    )


def is_microsoft_authority(authority_host):
    host = (urlsplit(authority_host).hostname or "").lower()
    return host in MICROSOFT_AUTHORITY_HOSTS


def resolve_graph(cloud="global", graph_url=None):
    """Return ``(graph_url, graph_scope)`` for a cloud: the Microsoft Graph root (without ``/v1.0``), with an explicit
    override applied, and the scope of the cloud's Graph resource (``https://graph.microsoft.us/.default``...)."""
    try:
        entry = CLOUDS[cloud or "global"]
    except KeyError:
        raise ValueError("cloud must be one of %s, got %r" % (", ".join(cloud_names()), cloud))
    root = (graph_url or entry["graph_url"]).rstrip("/")
    if root.lower().endswith("/v1.0"):
        root = root[:-len("/v1.0")]
    return root, entry["graph_url"] + "/.default"
