# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tenant list: the customers' tenants a security provider reaches with one multi-tenant app.

One multi-tenant app registration, consented to by each customer's admin, gets a token in each tenant with the same
client id and credential (https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-partners).
The inventory plugin and the event sources take the same ``tenants`` list: each entry a ``tenant_id`` and a ``name``
(a short label used in group names and events), optionally with its own connection and credential options for the
rare tenant that needs them (another cloud, its own app). Plain Python: no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.defender.endpoint.plugins.module_utils import options
from ansible_collections.defender.endpoint.plugins.module_utils.options import NAMES

# A label: lower-case letters, digits and underscores, starting with a letter; it names the group tenant_<label> and
# is safe in a host name, a file name and a log line.
LABEL = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# A directory (tenant) id, or one of the tenant's domains (connect.create_client checks the same shape).
TENANT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")
# What an entry may set besides tenant_id and name: the shared options, but never another tenant list.
PER_TENANT = tuple(n for n in NAMES if n != "tenant_id")


def parse(value, option="tenants"):
    """The checked tenant list: a list of ``{"tenant_id", "name", <shared option>: ...}``, or None when ``value`` is
    empty (one tenant, as before). ValueError naming the entry and the key for anything else: a missing or malformed
    tenant id or label, a label or a tenant id given twice, an unknown key."""
    if value in (None, "", []):
        return None
    if not isinstance(value, (list, tuple)):
        raise ValueError("%s must be a list of {tenant_id, name} entries, got %s." % (option, type(value).__name__))
    out = []
    labels = {}
    ids = {}
    for index, entry in enumerate(value):
        where = "%s[%d]" % (option, index)
        if not isinstance(entry, dict):
            raise ValueError("%s must be a dictionary with tenant_id and name, got %s." % (where, type(entry).__name__))
        unknown = sorted(set(entry) - set(("tenant_id", "name") + PER_TENANT))
        if unknown:
            raise ValueError("%s: unknown key(s) %s; an entry takes tenant_id, name and the connection and credential "
                             "options (%s)." % (where, ", ".join(unknown), ", ".join(PER_TENANT)))
        tenant_id = str(entry.get("tenant_id") or "").strip()
        if not TENANT_ID.match(tenant_id):
            raise ValueError("%s.tenant_id must be a directory (tenant) id or a domain such as "
                             "contoso.onmicrosoft.com, got %r." % (where, entry.get("tenant_id")))
        name = entry.get("name")
        if not isinstance(name, str) or not LABEL.match(name):
            raise ValueError("%s.name must be a short label of lower-case letters, digits and underscores, starting "
                             "with a letter (it names the group tenant_<name>), got %r." % (where, name))
        for seen, key, what in ((labels, name, "name"), (ids, tenant_id.lower(), "tenant_id")):
            if key in seen:
                raise ValueError("%s.%s %s is %s's too: each tenant is listed once." % (where, what, key, seen[key]))
            seen[key] = where
        checked = dict((k, v) for k, v in entry.items() if k in PER_TENANT and v not in (None, ""))
        checked.update(tenant_id=tenant_id, name=name)
        out.append(checked)
    # A renamed host ends in _<its tenant's label>; with one label the end of another (b_a and a), two tenants'
    # renamed hosts could not be told apart.
    for entry in out:
        for other in out:
            if other is not entry and entry["name"].endswith("_" + other["name"]):
                raise ValueError("%s.name %s ends in _%s, another tenant's name: renamed hosts end in _<name>, so no "
                                 "name may end in _<another name>." % (option, entry["name"], other["name"]))
    return out


def connection(shared, tenant):
    """The connection and credential options for one tenant: the ``shared`` ones (the top-level options, or those
    from the environment) with the tenant's own ``tenant_id`` and whatever else its entry sets. An entry with a
    credential of its own (a secret, a certificate, a token or a federated token file), or with an app of its own (a
    ``client_id`` other than the shared one), takes none of the shared credential options: the provider's secret is
    never sent for a tenant that has its own app.

    ValueError where the shared credential cannot reach the tenant: a ready access token is for the one tenant it
    was issued in, and a managed identity signs in to its own tenant only ("Managed identities don't currently support
    cross-directory scenarios",
    https://learn.microsoft.com/en-us/entra/identity/managed-identities-azure-resources/managed-identities-faq);
    either would read one tenant under every label."""
    out = options.own_credential(tenant, dict(shared), shared.get("client_id"))
    out.update((k, v) for k, v in tenant.items() if k != "name")
    where = "tenants entry %s" % tenant.get("name")
    if out.get("access_token") and not tenant.get("access_token"):
        raise ValueError("%s: an access token is issued for one tenant, so a shared access_token (or MDE_ACCESS_TOKEN) "
                         "cannot serve a tenant list. Sign in with the multi-tenant app's credential (a secret, a "
                         "certificate or a workload identity), or give the entry its own access_token." % where)
    if out.get("auth_mode") == "managed_identity" and tenant.get("auth_mode") != "managed_identity":
        raise ValueError("%s: a managed identity signs in to its own tenant only, so auth_mode managed_identity cannot "
                         "serve a tenant list. Use workload_identity (a federated credential of the multi-tenant app), "
                         "a secret or a certificate, or set auth_mode managed_identity on the identity's own tenant's "
                         "entry only." % where)
    return out


def connections(shared, entries):
    """``connection(shared, entry)`` for every entry of a checked list, checked before anything is read; ValueError
    as connection's, or when more than one entry signs in with the managed identity (it has one tenant)."""
    out = [connection(shared, entry) for entry in entries]
    managed = [entry["name"] for entry, options_ in zip(entries, out) if options_.get("auth_mode") == "managed_identity"]
    if len(managed) > 1:
        raise ValueError("tenants entries %s all set auth_mode managed_identity; a managed identity has one tenant, so "
                         "at most one entry may use it." % ", ".join(managed))
    return out
