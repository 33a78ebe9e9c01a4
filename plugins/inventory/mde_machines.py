# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: mde_machines
short_description: Machines known to Microsoft Defender for Endpoint as inventory hosts
version_added: 0.1.0
description:
  - Every machine (device) of a Defender for Endpoint tenant becomes a host, by default only the onboarded ones.
  - Filters are sent to the API as one server-side OData C($filter); all pages of 10,000 machines are read with one token.
  - Every property of the Machine entity is a host variable named C(mde_<property in snake_case>), for example
    C(mde_id), C(mde_computer_dns_name), C(mde_os_platform), C(mde_health_status), C(mde_machine_tags),
    C(mde_last_ip_address), C(mde_rbac_group_name), C(mde_exposure_level). Values are as the API returns them;
    nested values (C(mde_ip_addresses), C(mde_vm_metadata)) keep the API's camelCase keys.
  - The configuration file name must end with C(mde.yml), C(mde.yaml), C(mde_machines.yml) or C(mde_machines.yaml).
  - Needs the WindowsDefenderATP application permission C(Machine.Read.All) or C(Machine.ReadWrite.All).
  - The connection and credential options may be Jinja templates, for example a lookup of a vault or of
    HashiCorp Vault. Without a value in the file, they are read from the environment variables listed below,
    which is how AWX passes a credential to an inventory source.
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth.inventory
  - constructed
  - inventory_cache
options:
  plugin:
    description: The name of this plugin. It must be present for the file to be used as an inventory source.
    required: true
    type: str
    choices: [defender.endpoint.mde_machines]
  filters:
    description:
      - Only machines matching every key given here. Each key takes one value or a list; a machine matches a list
        when it matches one of its values.
      - All keys but O(filters.rbac_group_name) are sent to the API as one OData C($filter).
      - Unless O(filters.onboarding_status) is given, only onboarded machines are read (C(onboardingStatus eq 'Onboarded')).
        Set O(filters.onboarding_status) to V([]) (or to null) to read every device Defender knows, onboarded or only discovered.
    type: dict
    default: {}
    suboptions:
      os_platform:
        description: C(osPlatform) values, for example V(Windows11), V(WindowsServer2022), V(Linux), V(macOS).
        type: list
        elements: str
      health_status:
        description: C(healthStatus) values.
        type: list
        elements: str
        choices: [Active, Inactive, ImpairedCommunication, NoSensorData, NoSensorDataImpairedCommunication, Unknown]
      onboarding_status:
        description: C(onboardingStatus) values. Defaults to V(Onboarded).
        type: list
        elements: str
        choices: [Onboarded, CanBeOnboarded, Unsupported, InsufficientInfo]
      exposure_level:
        description: C(exposureLevel) values.
        type: list
        elements: str
        choices: [None, Low, Medium, High]
      risk_score:
        description: C(riskScore) values.
        type: list
        elements: str
        choices: [None, Informational, Low, Medium, High]
      rbac_group_name:
        description:
          - Device group names (C(rbacGroupName)).
          - The API cannot filter on it, so it is matched after reading.
        type: list
        elements: str
      machine_tags:
        description: Machines carrying at least one of these tags (C(machineTags)).
        type: list
        elements: str
      last_seen_within:
        description:
          - Machines whose C(lastSeen) is within this age, such as V(7d), V(24h) or V(30m), or after this ISO 8601 time.
          - C(lastSeen) is the time of the device's last full report, about once a day.
        type: str
  odata_filter:
    description:
      - A raw OData C($filter) expression, ANDed with O(filters), for example C(osBuild ge 19045).
      - The API answers HTTP 400 (C(ODataError)) for a field it does not filter on.
    type: str
  exclude_filters:
    description:
      - Machines to drop after reading. A list of filter sets with the same keys as O(filters); a machine matching
        every key of one set is dropped.
      - Matched on the controller, so they cost a full read of what O(filters) selects.
    type: list
    elements: dict
    default: []
  hostnames:
    description:
      - How to name a host, in order of preference. The first one with a value for the machine is used;
        a machine with no value for one falls through to the next.
      - Each entry is one of V(computer_dns_name), V(id), V(last_ip_address), V(last_external_ip_address),
        V(aad_device_id), or a Jinja template over the C(mde_*) variables, such as
        C({{ mde_computer_dns_name | split('.') | first }}).
      - When two machines get one name (a device re-imaged or re-onboarded appears twice), the one seen most recently
        (C(lastSeen)) keeps it and the other is left out of the inventory, with a warning naming it.
    type: list
    elements: str
    default: [computer_dns_name, id]
  vulnerabilities:
    description:
      - What Defender Vulnerability Management knows about each machine, read from the tenant-wide software
        vulnerabilities export (C(GET /api/machines/SoftwareVulnerabilitiesByMachine)), O(vulnerabilities.page_size)
        records a call, following C(@odata.nextLink) - never a call per machine.
      - Adds the host variables C(mde_missing_kbs) (the KB numbers the machine misses, digits only as the API spells
        them, for example V(5031356)) and C(mde_vulnerabilities) (one dict per CVE, with C(cve), C(severity),
        C(cvss_score), C(exploitability) as the API spells C(exploitabilityLevel) - V(NoExploit), V(ExploitIsPublic),
        V(ExploitIsVerified), V(ExploitIsInKit) - C(software) and the fixing C(kb) or null). A machine the export does
        not list gets empty lists.
      - Adds the groups C(mde_missing_kb_KB<n>) (one per missing KB, for example C(mde_missing_kb_KB5031356)) and
        C(mde_critical_exploitable) (a Critical CVE with a known exploit - public, verified or in a kit).
      - Needs the application permission C(Vulnerability.Read.All). The API allows 30 export calls a minute and
        1,000 an hour; Microsoft recommends this JSON export for tenants of up to 100,000 devices.
    type: dict
    default: {}
    suboptions:
      enabled:
        description: Read the export and add the variables and groups.
        type: bool
        default: false
      page_size:
        description: Records per call (the API's C(pageSize)), at most 200,000. Each record is about 1 KB.
        type: int
        default: 200000
      groups:
        description: Add the C(mde_missing_kb_KB<n>) and C(mde_critical_exploitable) groups.
        type: bool
        default: true
  tenants:
    description:
      - Several tenants in one inventory, for a security provider's customers reached with one multi-tenant app
        (U(https://learn.microsoft.com/en-us/defender-endpoint/api/exposed-apis-create-app-partners)). Each entry is a
        C(tenant_id) and a C(name), a short label of lower-case letters, digits and underscores starting with a letter.
        An entry may also set its own connection and credential options (any option of this plugin's connection
        and credential options, such as C(client_id), C(client_certificate_path), C(cloud) or C(api_url)) for a tenant that
        needs them; the others are the top-level ones (or their environment variables). An entry that sets a
        credential of its own (C(client_secret), C(client_certificate_path), C(access_token) or
        C(federated_token_file)), or a C(client_id) other than the top-level one, takes none of the top-level
        credential options.
      - A shared O(access_token) (a token is issued for one tenant) or O(auth_mode=managed_identity) (a managed
        identity has one tenant) cannot serve the list, and the source fails before any request; an entry may set
        its own C(access_token), and one entry, the identity's own tenant, C(auth_mode=managed_identity).
      - Exactly the listed tenants are read; O(tenant_id) (or C(MDE_TENANT_ID), as AWX sets it) is not an extra one.
        The tenants are read side by side (up to 8 at once), each with its own token, call budget and cache entry.
      - Every host gets C(mde_tenant_id) and C(mde_tenant) (the label), and, for each option its entry sets that is
        not a secret, C(mde_<option>) (for example C(mde_client_id)), and is in the group C(tenant_<name>) and in
        the group C(mde_tenants).
        Keyed and conditional groups span the tenants. A per-host task follows its host's tenant with
        C(module_defaults) that set C(tenant_id) to C({{ mde_tenant_id }}) and, for a tenant with its own
        credential, C(client_id) and C(client_certificate_path) to those host variables (see EXAMPLES); a task that
        gives a credential of its own does not also take the environment's.
      - The hosts are given taking the tenants in turn (the first machine of each tenant, then the second of each,
        ...), through the group C(mde_tenants), created first (Ansible takes a play's hosts group by group, and a
        play over C(all) with O(tenants) would otherwise go tenant after tenant, every fork waiting on one tenant's
        API limits while the others' stay unused).
      - Two machines of different tenants with one name are two hosts. The machine Defender saw first
        (C(firstSeen); on a tie, the tenant listed first) keeps the name, each other is named C(<name>_<tenant name>)
        (and C(_<the first 8 characters of its id>) should that be taken too), with one warning naming the machine
        name and both tenants. A machine of the same name that a customer adds later gets the suffix, so no existing
        host is renamed. Set C(ansible_host) with O(compose) to connect to a renamed host.
      - A name that ends in C(_<name>) of another listed tenant is kept for that tenant's renamed hosts; a machine
        of any other tenant named so (a device chooses its own name) is C(<its name>_<its tenant name>), with a
        warning, so no device can take the host of another customer's machine by renaming itself. For the same
        reason no tenant C(name) may end in C(_<another tenant's name>).
      - A tenant that cannot be read (its admin never consented to the app, or revoked it) is left out with one
        warning naming the tenant and what its admin must do; the others are listed. See O(fail_on_tenant_error).
      - Without this option, the one tenant of O(tenant_id) is read, as before.
    type: list
    elements: dict
  fail_on_tenant_error:
    description:
      - With O(tenants), fail the inventory when any tenant cannot be read, instead of leaving it out with a warning.
      - When every tenant fails, the inventory fails either way.
    type: bool
    default: false
notes:
  - The plugin only reads; it makes only C(GET /api/machines) requests, 10,000 machines per page (and, with
    O(vulnerabilities.enabled), C(GET /api/machines/SoftwareVulnerabilitiesByMachine) requests).
  - With O(cache) on, the machines read are stored in the cache plugin and a run within O(cache_timeout) makes no
    request at all, not even for a token. The cache holds the Machine entities (and, with O(vulnerabilities.enabled),
    the per-machine KBs and CVEs) only, never a credential.
    Changing O(filters), O(odata_filter), O(api_url) or O(tenant_id) makes the cached copy unused. With O(tenants),
    each tenant has its own cached copy.
  - Use C(ansible-inventory --flush-cache) or the C(meta) task C(refresh_inventory) to read the API again.
seealso:
  - module: defender.endpoint.mde_machine_info
'''

EXAMPLES = r'''
# mde.yml -- every onboarded machine, credentials from MDE_* environment variables
plugin: defender.endpoint.mde_machines
---
# mde.yml -- ready for patching: connection by OS, groups by platform, tag, exposure and device group
plugin: defender.endpoint.mde_machines
filters:
  last_seen_within: 7d
hostnames:
  - computer_dns_name
  - last_ip_address
  - id
compose:
  ansible_host: mde_last_ip_address
  ansible_connection: "'psrp' if mde_os_platform.startswith('Windows') else 'ssh'"
keyed_groups:
  - key: mde_os_platform
    prefix: os
  - key: mde_machine_tags
    prefix: tag
  - key: mde_exposure_level
    prefix: exposure
  - key: mde_rbac_group_name
    prefix: rbac
    default_value: ungrouped
groups:
  windows: mde_os_platform.startswith('Windows')
  high_risk: mde_risk_score == 'High'
---
# mde.yml -- patch by missing KB: groups mde_missing_kb_KB<n> and mde_critical_exploitable, from the export
plugin: defender.endpoint.mde_machines
vulnerabilities:
  enabled: true
keyed_groups:
  - key: mde_os_platform
    prefix: os
---
# mde.yml -- servers only, secret from HashiCorp Vault, cached for an hour
plugin: defender.endpoint.mde_machines
tenant_id: 11111111-2222-3333-4444-555555555555
client_id: 66666666-7777-8888-9999-000000000000
client_secret: "{{ lookup('community.hashi_vault.hashi_vault', 'secret=kv/data/mde:client_secret') }}"
filters:
  os_platform: [WindowsServer2019, WindowsServer2022]
  rbac_group_name: Servers
exclude_filters:
  - machine_tags: decommissioned
  - health_status: [Inactive, NoSensorData]
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: ~/.cache/mde_machines_inventory
cache_timeout: 3600
---
# customers.mde.yml -- a security provider's three customers, one multi-tenant app; the secret from MDE_CLIENT_SECRET
plugin: defender.endpoint.mde_machines
client_id: 66666666-7777-8888-9999-000000000000
tenants:
  - tenant_id: 11111111-1111-1111-1111-111111111111
    name: contoso
  - tenant_id: 22222222-2222-2222-2222-222222222222
    name: fabrikam
  - tenant_id: 33333333-3333-3333-3333-333333333333
    name: northwind
    cloud: gcc_high
  - tenant_id: 44444444-4444-4444-4444-444444444444
    name: tailspin
    # this customer registered its own app: its certificate, and none of the shared secret
    client_id: 77777777-8888-9999-0000-111111111111
    client_certificate_path: /etc/mde/tailspin.pem
compose:
  ansible_host: mde_last_ip_address
keyed_groups:
  - key: mde_os_platform
    prefix: os
# A play over it: each task in its host's tenant (and with its host's own app, where its tenant has one).
#   module_defaults:
#     group/defender.endpoint.mde:
#       tenant_id: "{{ mde_tenant_id }}"
#       cloud: "{{ mde_cloud | default(omit) }}"
#       client_id: "{{ mde_client_id | default(omit) }}"
#       client_certificate_path: "{{ mde_client_certificate_path | default(omit) }}"
'''

import datetime
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from itertools import zip_longest

from ansible.errors import AnsibleError, AnsibleParserError
from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils import tenants as tenant_list
from ansible_collections.defender.endpoint.plugins.module_utils import options as shared_options
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEDependencyError, MDEError, quoted
from ansible_collections.defender.endpoint.plugins.module_utils import vulnerabilities as tvm
from ansible_collections.defender.endpoint.plugins.module_utils.auth import prepare_cache_dir
from ansible_collections.defender.endpoint.plugins.module_utils.context import missing_requirements
from ansible_collections.defender.endpoint.plugins.module_utils.progress import QUIET_FOR, Progress
from ansible_collections.defender.endpoint.plugins.plugin_utils.inventory import CachedResults, query_digest
from ansible_collections.defender.endpoint.plugins.plugin_utils.jinja_memo import Memo
from ansible_collections.defender.endpoint.plugins.plugin_utils.untrusted import safe_host_name, untrusted

AUTH_OPTIONS = shared_options.NAMES  # documented by the defender.endpoint.auth.inventory fragment (tested against it)
# Options that identify what was read: a cached copy made with other values is not used. No secret here.
QUERY_OPTIONS = ("api_url", "cloud", "tenant_id", "client_id", "filters", "odata_filter")
VULNERABILITIES_SUFFIX = "_vulnerabilities"  # the vulnerability export's cache key: the source's key and this

FILTER_KEYS = tuple(odata.MACHINE_FILTERS) + ("rbac_group_name",)
# hostnames entries that name a Machine property.
HOSTNAME_FIELDS = {
    "computer_dns_name": "computerDnsName",
    "id": "id",
    "last_ip_address": "lastIpAddress",
    "last_external_ip_address": "lastExternalIpAddress",
    "aad_device_id": "aadDeviceId",
}
# The Machine properties the API documents (https://learn.microsoft.com/en-us/defender-endpoint/api/machine) or was
# seen returning; others are converted on first sight.
MACHINE_PROPERTIES = (
    "id", "computerDnsName", "firstSeen", "lastSeen", "osPlatform", "onboardingStatus", "osProcessor", "version",
    "osBuild", "lastIpAddress", "lastExternalIpAddress", "healthStatus", "rbacGroupName", "rbacGroupId", "riskScore",
    "aadDeviceId", "machineTags", "exposureLevel", "deviceValue", "ipAddresses", "osArchitecture", "isAadJoined",
    "mergedIntoMachineId", "isPotentialDuplication", "isExcluded", "exclusionReason", "osVersion", "agentVersion",
    "defenderAvStatus", "managedBy", "managedByStatus", "vmMetadata",
)
MAX_DUPLICATE_WARNINGS = 20
NAME_LIMIT = 200  # characters of a device's name in a warning
VULNERABILITY_OPTIONS = {"enabled": False, "page_size": tvm.EXPORT_MAX_PAGE_SIZE, "groups": True}
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TENANTS_GROUP = "mde_tenants"
TENANT_SUFFIX = "_tenant_"  # a tenant's cache key: the source's key, this and the tenant's label
MAX_PARALLEL_TENANTS = 8  # tenants read at once; each has its own call budget, so they do not slow one another

_CAMEL_1 = re.compile(r"(.)([A-Z][a-z]+)")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")


def snake_case(name):
    """``computerDnsName`` -> ``computer_dns_name``, ``lastExternalIpAddress`` -> ``last_external_ip_address``."""
    return _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", name)).lower()


def var_name(prop):
    return "mde_" + snake_case(prop)


class HostVarNames(dict):
    """Machine property -> host variable name, computed once per property."""

    def __missing__(self, prop):
        value = self[prop] = var_name(prop)
        return value


def hostvars_of(machine, names):
    """Every Machine property as ``mde_<snake_case>`` (keys such as ``@odata.etag`` are skipped), marked untrusted:
    a device sets its own tags and name, so none of it may ever be rendered as a template."""
    return untrusted(dict((names[k], v) for k, v in machine.items() if not k.startswith("@")))


def tenant_vars(tenant):
    """The host variables a tenant list gives its hosts: ``mde_tenant_id``, ``mde_tenant`` (the label) and, for a
    tenant with its own connection or credential options, each one that is not a secret as ``mde_<option>`` (a
    per-host task's module_defaults pick them up; a secret stays in the inventory file or a group_vars vault)."""
    out = {"mde_tenant_id": tenant["tenant_id"], "mde_tenant": tenant["name"]}
    out.update(("mde_%s" % k, v) for k, v in tenant.items()
               if k not in ("tenant_id", "name") and k not in shared_options.SECRETS)
    return out


def interleaved(hosts, tenants):
    """``hosts`` ([(name, machine, tenant, ...)]) taken in turn from each tenant (the first of each tenant, then the
    second of each, ...), each tenant's hosts in their own order. A play goes through its hosts in inventory order
    with ``forks`` workers at a time: with the tenants one after the other, every worker would wait on the first
    tenant's API limits while the others' stay unused; taken in turn, the tenants' limits are used side by side."""
    order = dict((tenant["tenant_id"], index) for index, tenant in enumerate(tenants))
    lanes = [[] for _tenant in tenants]
    for host in hosts:
        lanes[order[host[2]["tenant_id"]]].append(host)
    out = []
    for row in zip_longest(*lanes):
        out.extend(host for host in row if host is not None)
    return out


def time_key(value):
    """A sortable key for an API time such as ``2026-01-31T08:00:00.1234567Z`` (missing or unreadable sorts first)."""
    return odata.time_or_none(value) or datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)


def normalize_filters(filters, option):
    """Check the keys and enum values of one filter set; return it with every value a list (None kept)."""
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise AnsibleError("%s must be a dictionary of filters, got %s." % (option, type(filters).__name__))
    unknown = sorted(set(filters) - set(FILTER_KEYS))
    if unknown:
        raise AnsibleError("%s: unknown filter %s; the filters are %s." % (
            option, ", ".join(unknown), ", ".join(FILTER_KEYS)))
    out = {}
    for key, value in filters.items():
        if key == "last_seen_within":
            if value in (None, ""):
                out[key] = None
                continue
            try:
                odata.parse_time(value, "%s.last_seen_within" % option)
            except ValueError as e:
                raise AnsibleError("%s." % e)
            out[key] = to_native(value)
            continue
        values = [to_native(v) for v in odata.as_list(value)]
        allowed = odata.MACHINE_ENUMS.get(key)
        if allowed:
            for v in values:
                if v not in allowed:
                    raise AnsibleError("%s.%s: %r is not one of %s." % (option, key, v, ", ".join(allowed)))
        out[key] = values if value is not None else None
    return out


def exclusion_matcher(filter_set):
    """A predicate: does a Machine match every key of this filter set? Strings compare case-insensitively."""
    tests = []
    for key, values in filter_set.items():
        if values is None or values == []:
            continue
        if key == "last_seen_within":
            since = odata.parse_time(values, "exclude_filters.last_seen_within")
            tests.append(lambda m, since=since: time_key(m.get("lastSeen")) >= since)
        elif key == "machine_tags":
            wanted = frozenset(v.lower() for v in values)
            tests.append(lambda m, wanted=wanted: any((t or "").lower() in wanted for t in (m.get("machineTags") or [])))
        else:
            field = "rbacGroupName" if key == "rbac_group_name" else odata.MACHINE_FILTERS[key][0]
            wanted = frozenset(v.lower() for v in values)
            tests.append(lambda m, field=field, wanted=wanted: str(m.get(field) or "").lower() in wanted)
    if not tests:
        return None
    return lambda m: all(test(m) for test in tests)


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable, CachedResults):

    NAME = "defender.endpoint.mde_machines"
    _keying = False
    _unsafe_names = 0

    def verify_file(self, path):
        if super(InventoryModule, self).verify_file(path):
            return path.endswith(("mde.yml", "mde.yaml", "mde_machines.yml", "mde_machines.yaml"))
        return False

    # -- options ----------------------------------------------------------------------------------------
    def _templated(self, name):
        """An option's value, templated when it was written in the configuration file (a vault variable or a
        lookup for a secret). A value from the environment is used as it is: a secret is never evaluated.
        Only public plugin interfaces: get_option() holds the file's values on every supported ansible-core, while
        get_option_and_origin() reads only the environment and the defaults before 2.19."""
        value = self.get_option(name)
        if name in self._config_keys:
            if isinstance(value, (str, list, dict)):
                self.templar.available_variables = self._vars or {}
                value = self.templar.template(value)
            return value
        if name in shared_options.SHARED_OPTIONS:
            return self._from_environment(name)
        origin = self.get_option_and_origin(name)[1]
        if isinstance(origin, str) and origin.startswith("env:") and not os.environ.get(origin[4:].strip(), "").strip():
            # AWX sets every variable of a credential type, the unused ones empty: an empty variable is unset
            # (a `type: path` option would otherwise turn "" into the current directory).
            return None
        return value

    @staticmethod
    def _from_environment(name):
        """A shared option not in the file: the first non-empty of its environment variables, in the order the modules
        and event sources read them (MDE_CLIENT_ID before AZURE_CLIENT_ID), converted by options.resolve() as the event
        sources' are. Ansible's configuration would take the last one set, so the AZURE_CLIENT_ID an AKS webhook puts
        in every pod would beat the credential's MDE_ one; and an empty variable (an unused AWX credential field) is
        unset."""
        try:
            return shared_options.resolve({}, os.environ, names=(name,))[name]
        except ValueError as e:
            raise AnsibleError(str(e))

    def _show_sign_in(self, message):
        """A device code sign-in (auth_mode device_code) shown on standard error while the inventory waits: the
        standard output may be the JSON of ansible-inventory --list."""
        self.display.display("defender.endpoint.mde_machines needs a user to sign in. %s" % message, stderr=True)

    def _show_progress(self, line):
        """A line of a long read (progress.Progress), on standard error as the sign-in message."""
        self.display.display("defender.endpoint.mde_machines is %s" % line, stderr=True)

    def _counted(self, pages, what, noun):
        """``pages`` as they come; a read that lasts over a minute (from the start with -v) says how many ``noun``
        and pages it has read, at most once a minute, and how many in all at the end."""
        progress = Progress(self._show_progress, what, quiet_for=0 if self.display.verbosity >= 1 else QUIET_FOR)
        items = count = 0
        for count, page in enumerate(pages, 1):
            items += len(page)
            progress.update("reading", "%d %s in %d page%s so far" % (items, noun, count, "" if count == 1 else "s"))
            yield page
        progress.done("read", "%d %s in %d page%s" % (items, noun, count, "" if count == 1 else "s"))

    def _auth_options(self):
        opts = {}
        for name in AUTH_OPTIONS:
            try:
                value = self._templated(name)
            except AnsibleError as e:
                # The error text of a failed lookup must not carry a secret: name the option only.
                raise AnsibleError("Could not template the option %s: %s" % (name, to_native(e).splitlines()[0]))
            opts[name] = value
        return opts

    def _query_fingerprint(self, auth, filters, odata_filter):
        facts = dict((k, auth.get(k)) for k in QUERY_OPTIONS if k in auth)
        facts.update(filters=filters, odata_filter=odata_filter)
        return query_digest(facts)

    # -- reading ----------------------------------------------------------------------------------------
    def _client(self, auth, warnings):
        """A client for ``auth``; its warnings (the token cache's, the budget's) go to ``warnings``."""
        from ansible_collections.defender.endpoint.plugins.module_utils.connect import create_client
        client = create_client(sign_in=self._show_sign_in, **auth)
        warnings.extend(w for w in client.warnings if w not in warnings)
        client.warnings = warnings
        return client

    def _fetch(self, auth, server_filters, odata_filter, warnings, of=""):
        """Every machine the filters select, from the API (``of``: " of tenant <label>" with a tenant list)."""
        missing = missing_requirements(auth)
        if missing:
            # Before anything else, as every task does: a cached token must not hide a missing msal.
            several = len(missing) > 1
            what = "The Python librar%s %s %s required" % (
                "ies" if several else "y", ", ".join(missing), "are" if several else "is")
            raise AnsibleError("%s to use the defender.endpoint.mde_machines inventory plugin: the Python that runs "
                               "Ansible, %s, does not have it. Install it there: %s -m pip install '%s'." % (
                                   what, sys.executable, sys.executable, "' '".join(missing)))
        try:
            client = self._client(auth, warnings)
            expression = odata.machine_filter(server_filters, odata_filter)
            self.display.vvv("mde_machines: GET /api/machines%s $filter=%s" % (of, expression))
            return [machine for page in self._counted(
                client.pages("/api/machines", odata_filter=expression, empty_on_404=True),
                "the machines%s (GET /api/machines)" % of, "machines") for machine in page]
        except MDEDependencyError as e:
            raise AnsibleError("%s to use the defender.endpoint.mde_machines inventory plugin, on the Python that runs "
                               "Ansible, %s: %s -m pip install '%s'." % (e, sys.executable, sys.executable, e.library))
        except MDEError as e:
            raise AnsibleError("defender.endpoint.mde_machines: %s" % e)
        except ValueError as e:
            raise AnsibleError("defender.endpoint.mde_machines: %s." % e)

    def _vulnerability_options(self):
        """The vulnerabilities option, checked before any request."""
        raw = self._templated("vulnerabilities") or {}
        if not isinstance(raw, dict):
            raise AnsibleError("vulnerabilities must be a dictionary such as {enabled: true}, got %r." % (raw,))
        unknown = sorted(set(raw) - set(VULNERABILITY_OPTIONS))
        if unknown:
            raise AnsibleError("vulnerabilities: unknown key(s) %s; known: %s." % (
                ", ".join(unknown), ", ".join(sorted(VULNERABILITY_OPTIONS))))
        opts = dict(VULNERABILITY_OPTIONS)
        opts.update((k, v) for k, v in raw.items() if v is not None)
        for key in ("enabled", "groups"):
            try:
                opts[key] = boolean(opts[key], strict=True)
            except TypeError:
                raise AnsibleError("vulnerabilities.%s must be a boolean, got %r." % (key, opts[key]))
        try:
            opts["page_size"] = int(opts["page_size"])
        except (TypeError, ValueError):
            opts["page_size"] = -1
        if not 1 <= opts["page_size"] <= tvm.EXPORT_MAX_PAGE_SIZE:
            raise AnsibleError("vulnerabilities.page_size must be from 1 to %d, got %r." % (
                tvm.EXPORT_MAX_PAGE_SIZE, raw.get("page_size")))
        return opts

    def _read_vulnerabilities(self, auth, page_size, warnings, of=""):
        """{machine id (lower case): {"missing_kbs", "vulnerabilities"}} from the export."""
        try:
            client = self._client(auth, warnings)
            self.display.vvv("mde_machines: GET %s%s pageSize=%d" % (tvm.EXPORT_PATH, of, page_size))
            pages = self._counted(tvm.export_pages(client, page_size),
                                  "the vulnerability export%s (GET %s)" % (of, tvm.EXPORT_PATH), "records")
            found = tvm.per_machine(record for page in pages for record in page)
        except MDEDependencyError as e:
            raise AnsibleError("%s to use the defender.endpoint.mde_machines inventory plugin, on the Python that runs "
                               "Ansible, %s: %s -m pip install '%s'." % (e, sys.executable, sys.executable, e.library))
        except MDEError as e:
            raise AnsibleError("defender.endpoint.mde_machines: %s" % e)
        return dict((k.lower(), v) for k, v in found.items())

    def _read(self, path, cache, auth, query, vuln_options, warnings, suffix="", of=""):
        """(machines, vulnerabilities or None) for one tenant (or the only one), each from the cache when it holds
        them for the same query, else from the API and then stored. ``query``: (filters, odata_filter)."""
        filters, odata_filter = query
        fingerprint = self._query_fingerprint(auth, filters, odata_filter)
        machines = self.get_cached_result(path, cache, fingerprint, list, suffix=suffix)
        if machines is not None:
            self.display.vvv("mde_machines: %d machines%s from the inventory cache" % (len(machines), of))
        else:
            server_filters = dict((k, v) for k, v in filters.items() if k != "rbac_group_name")
            machines = self._fetch(auth, server_filters, odata_filter, warnings, of)
            # Only the entities and a digest of what selected them: never a credential. Also after --flush-cache or
            # refresh_inventory (cache false): read the API, then store.
            self.update_cached_result(path, fingerprint, machines, suffix=suffix)
        if not vuln_options["enabled"]:
            return machines, None
        fingerprint = self._query_fingerprint(auth, {"vulnerabilities": True}, None)
        suffix += VULNERABILITIES_SUFFIX
        found = self.get_cached_result(path, cache, fingerprint, dict, suffix=suffix)
        if found is None:
            found = self._read_vulnerabilities(auth, vuln_options["page_size"], warnings, of)
            self.update_cached_result(path, fingerprint, found, suffix=suffix)
        return machines, found

    def _read_tenants(self, path, cache, auth, tenants, query, vuln_options):
        """[(tenant, machines, vulnerabilities)] for every tenant that could be read, the tenants side by side (each
        has its own token and call budget). A tenant that fails (its admin never consented, or revoked it) is left
        out with one warning naming it and what to do; with fail_on_tenant_error, or when every tenant fails, the
        inventory fails naming each."""
        def read(tenant):
            warnings = []
            of = " of tenant %s" % tenant["name"]
            try:
                machines, found = self._read(path, cache, tenant_list.connection(auth, tenant), query, vuln_options,
                                             warnings, suffix=TENANT_SUFFIX + tenant["name"], of=of)
                return tenant, machines, found, warnings, None
            except AnsibleError as e:
                return tenant, None, None, warnings, to_native(e).replace("defender.endpoint.mde_machines: ", "", 1)
            except Exception as e:  # pylint: disable=broad-except
                # Whatever one tenant's answers hold (a record of a shape the plugin does not expect), the others are
                # still listed: the tenant is left out, or fails the source with fail_on_tenant_error.
                return tenant, None, None, warnings, "its answer could not be read (%s: %s)" % (
                    type(e).__name__, quoted(to_native(e), 300))

        with ThreadPoolExecutor(max_workers=min(len(tenants), MAX_PARALLEL_TENANTS)) as pool:
            results = list(pool.map(read, tenants))
        failed = []
        read_ok = []
        for tenant, machines, found, warnings, error in results:
            self._warnings.extend("tenant %s: %s" % (tenant["name"], w) for w in warnings if w not in self._warnings)
            if error is None:
                read_ok.append((tenant, machines, found))
            else:
                failed.append("tenant %s (%s) is left out: %s" % (tenant["name"], tenant["tenant_id"], error))
        if failed and (self.get_option("fail_on_tenant_error") or not read_ok):
            raise AnsibleError("defender.endpoint.mde_machines: %s" % " ".join(failed))
        self._warnings.extend(failed)
        return read_ok

    # -- naming -----------------------------------------------------------------------------------------
    def _hostname_getters(self, preferences):
        getters = []
        for entry in preferences:
            entry = entry if isinstance(entry, str) else to_native(entry)
            if entry in HOSTNAME_FIELDS:
                getters.append((entry, HOSTNAME_FIELDS[entry], None))
            elif "{{" in entry or "{%" in entry:
                getters.append((entry, None, entry))
            else:
                raise AnsibleError("hostnames: %r is neither one of %s nor a Jinja template." % (
                    entry, ", ".join(HOSTNAME_FIELDS)))
        if not getters:
            raise AnsibleError("hostnames must name at least one way to name a host.")
        return getters

    def _hostname(self, machine, getters, names):
        for entry, field, template in getters:
            if field is not None:
                value = machine.get(field)
            else:
                variables = hostvars_of(machine, names)
                try:
                    value = self._memo.evaluate(template, variables,
                                                lambda: self._template_with(template, variables), expression=False)
                except Exception as e:  # pylint: disable=broad-except
                    if self.get_option("strict"):
                        raise AnsibleError("hostnames: %s failed for machine %s: %s" % (
                            entry, machine.get("id"), to_native(e)))
                    value = None
            if value not in (None, "") and not isinstance(value, (list, dict)):
                value = to_native(value)
                if safe_host_name(value):
                    return value
                # A name with template delimiters, white space or control characters is no host name (a device
                # chooses its own): the next preference names the host, or it is left out.
                self._unsafe_names += 1
        return None

    def _template_with(self, template, variables):
        self.templar.available_variables = variables
        return self.templar.template(template)

    # -- constructed features, with pure expressions evaluated once per distinct input -------------------
    def _compose(self, template, variables, disable_lookups=...):
        if disable_lookups is not ... or self.get_option("use_extra_vars"):
            return super(InventoryModule, self)._compose(template, variables, disable_lookups)
        if isinstance(template, str) and template in variables and IDENTIFIER.match(template):
            value = variables[template]  # a bare variable name, as in most keyed_groups and compose entries
            if value is None and self._keying:
                # A null key takes the entry's default_value on every core (before 2.19 Constructable skipped it).
                return ""
            return value
        return self._memo.evaluate(template, variables,
                                   lambda: super(InventoryModule, self)._compose(template, variables))

    def _add_host_to_composed_groups(self, groups, variables, host, strict=False, fetch_hostvars=True):
        """As Constructable's, with each conditional evaluated once per distinct input."""
        if not groups or not isinstance(groups, dict):
            return
        if fetch_hostvars:
            variables = dict(variables, **self.inventory.get_host(host).get_vars())

        def evaluate(conditional):
            self.templar.available_variables = variables
            if hasattr(self.templar, "evaluate_conditional"):  # ansible-core 2.19 and later
                return self.templar.evaluate_conditional(conditional)
            # Before 2.19, as Constructable itself does it there: the conditional inside an if block.
            return boolean(self.templar.template("{%% if %s %%} True {%% else %%} False {%% endif %%}" % conditional))

        for group_name, conditional in groups.items():
            group_name = self._sanitize_group_name(group_name)
            try:
                result = self._memo.evaluate(conditional, variables, lambda: evaluate(conditional))
            except Exception as e:  # pylint: disable=broad-except
                if strict:
                    raise AnsibleParserError("Could not add host %s to group %s: %s" % (host, group_name, to_native(e)))
                continue
            if result:
                self.inventory.add_child(self.inventory.add_group(group_name), host)

    # -- main -------------------------------------------------------------------------------------------
    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache=cache)
        self._memo = Memo()
        self._config_keys = frozenset(self._read_config_data(path) or ())
        # The collection's own directory is made 0700 before a cache plugin may make it with its default mode.
        self._warnings = []
        prepare_cache_dir(warnings=self._warnings)
        if self.get_option("cache"):
            self.load_cache_plugin()

        filters = normalize_filters(self._templated("filters"), "filters")
        if "onboarding_status" not in filters:
            filters["onboarding_status"] = ["Onboarded"]
        exclusions = []
        for index, entry in enumerate(self._templated("exclude_filters") or []):
            matcher = exclusion_matcher(normalize_filters(entry, "exclude_filters[%d]" % index))
            if matcher:
                exclusions.append(matcher)
        odata_filter = self._templated("odata_filter")
        getters = self._hostname_getters(self.get_option("hostnames") or [])
        auth = self._auth_options()
        vuln_options = self._vulnerability_options()
        try:
            tenants = tenant_list.parse(self._templated("tenants"))
            self._tenant_labels = [tenant["name"] for tenant in tenants or ()]
            if tenants is not None:
                # Each tenant's connection checked before any tenant is read (a shared token or managed identity
                # cannot serve a list); read() makes them again, in its thread.
                tenant_list.connections(auth, tenants)
        except ValueError as e:
            raise AnsibleError("defender.endpoint.mde_machines: %s" % e)

        query = (filters, odata_filter)
        if tenants is None:
            machines, found = self._read(path, cache, auth, query, vuln_options, self._warnings)
            read = [(None, machines, found)]
        else:
            read = self._read_tenants(path, cache, auth, tenants, query, vuln_options)
        self._populate(read, filters, exclusions, getters, vuln_options["groups"])
        for text in self._warnings:
            self.display.warning("mde_machines: %s" % text)

    def _populate(self, read, filters, exclusions, getters, vulnerability_groups=True):
        """Hosts for ``read``: [(tenant or None, machines, vulnerabilities or None)]."""
        groups = frozenset(g.lower() for g in (filters.get("rbac_group_name") or []))
        names = HostVarNames((p, var_name(p)) for p in MACHINE_PROPERTIES)
        chosen = [(tenant, self._choose(machines, groups, exclusions, getters, names, tenant), found)
                  for tenant, machines, found in read]
        hosts = self._across_tenants(chosen)
        # Pass 2: hosts, variables and constructed groups.
        compose = self.get_option("compose")
        composed_groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")
        strict = self.get_option("strict")
        constructed = bool(compose or composed_groups or keyed_groups)
        inventory = self.inventory
        # With tenants, every host is first in the group mde_tenants, created before any other group of this source:
        # Ansible lists a play's hosts group by group, so a play over all goes through the tenants in turn, as the
        # hosts are given (interleaved), instead of tenant after tenant (see interleaved()).
        everyone = inventory.add_group(TENANTS_GROUP) if any(tenant for tenant, _h, _f in chosen) else None
        for name, machine, tenant, vulnerabilities in hosts:
            hostvars = hostvars_of(machine, names)
            inventory.add_host(name)
            if everyone is not None:
                inventory.add_child(everyone, name)
            if tenant is not None:
                hostvars.update(tenant_vars(tenant))
                inventory.add_child(inventory.add_group("tenant_%s" % tenant["name"]), name)
            if vulnerabilities is not None:
                self._add_vulnerabilities(name, hostvars, vulnerabilities.get((machine.get("id") or "").lower()) or {},
                                          vulnerability_groups)
            for key, value in hostvars.items():
                inventory.set_variable(name, key, value)
            if not constructed:
                continue
            if compose:
                self._set_composite_vars(compose, hostvars, name, strict=strict)
            if not (composed_groups or keyed_groups):
                continue
            # The host's variables (with the composed ones) are fetched once, not once per helper.
            variables = inventory.get_host(name).get_vars()
            if composed_groups:
                self._add_host_to_composed_groups(composed_groups, variables, name, strict=strict, fetch_hostvars=False)
                if keyed_groups:
                    variables = inventory.get_host(name).get_vars()
            if keyed_groups:
                self._keying = True
                try:
                    self._add_host_to_keyed_groups(keyed_groups, variables, name, strict=strict, fetch_hostvars=False)
                finally:
                    self._keying = False

    def _choose(self, machines, groups, exclusions, getters, names, tenant=None):
        """{host name: machine} for one tenant's machines: a name per machine; on a clash the most recently seen
        machine keeps it (a device re-imaged or re-onboarded appears twice in one tenant)."""
        of = "" if tenant is None else " of tenant %s" % tenant["name"]
        chosen = {}  # host name -> machine
        left_out = []  # (machine, host name, winner)
        unnamed = []
        unsafe_names = []
        renamed = []
        for machine in machines:
            if groups and (machine.get("rbacGroupName") or "").lower() not in groups:
                continue
            if exclusions and any(match(machine) for match in exclusions):
                continue
            unsafe_before = self._unsafe_names
            name = self._hostname(machine, getters, names)
            if name is None:
                (unsafe_names if self._unsafe_names > unsafe_before else unnamed).append(machine)
                continue
            if self._unsafe_names > unsafe_before:
                renamed.append((machine, name))
            other = chosen.get(name)
            if other is None:
                chosen[name] = machine
            elif time_key(machine.get("lastSeen")) > time_key(other.get("lastSeen")):
                chosen[name] = machine
                left_out.append((other, name, machine))
            else:
                left_out.append((machine, name, other))
        self._warn_left_out(left_out, unnamed, of)
        if renamed:
            self.display.warning(
                "mde_machines: %d machines%s have a name with template delimiters, white space or control characters (or . or ..), "
                "which no host name has; a later hostnames preference names them (%s%s)." % (
                    len(renamed), of, ", ".join("%s as %s" % (quoted(m.get("id"), 60), n) for m, n in renamed[:5]),
                    ", ..." if len(renamed) > 5 else ""))
        if unsafe_names:
            self.display.warning(
                "mde_machines: %d machines%s are left out: the names the hostnames preferences give them have template "
                "delimiters, white space or control characters (or are . or ..), which no host name has, and no later preference "
                "gives another (machine ids: %s%s)." % (
                    len(unsafe_names), of, ", ".join(quoted(m.get("id"), 60) for m in unsafe_names[:5]),
                    ", ..." if len(unsafe_names) > 5 else ""))
        return chosen

    def _across_tenants(self, chosen):
        """[(host name, machine, tenant or None, vulnerabilities or None)] from each tenant's {host name: machine}.

        Machines of two tenants with one name are two hosts. The machine Defender saw first (``firstSeen``; on a tie,
        the tenant listed first) keeps the name; each other is ``<name>_<tenant label>`` (and ``_<its id's first 8
        characters>`` should that name be taken too), so a customer adding a machine of the same name later renames
        only that machine. One warning per name, naming it and the tenants.

        A name that ends in ``_<label>`` of another listed tenant is kept for that tenant's renamed hosts; a machine
        of any other tenant named so (a device chooses its own name) is ``<name>_<its own label>``, with a warning.
        So no device can take the host name of another customer's machine by renaming itself."""
        if len(chosen) == 1 and chosen[0][0] is None:
            tenant, hosts, found = chosen[0]
            return [(name, machine, tenant, found) for name, machine in hosts.items()]
        labels = self._tenant_labels
        owners = {}
        reserved = []
        for order, (tenant, hosts, found) in enumerate(chosen):
            own = tenant["name"]
            for name, machine in hosts.items():
                claim = name
                if any(name.endswith("_" + label) for label in labels if label != own):
                    claim = "%s_%s" % (name, own)
                    reserved.append((name, own, claim))
                owners.setdefault(claim, []).append((time_key(machine.get("firstSeen")), order, machine, tenant, found))
        taken = set(owners)
        out = []
        clashes = []
        for name, entries in owners.items():
            entries.sort(key=lambda entry: entry[:2])
            keeper = entries[0]
            out.append((name,) + keeper[2:])
            for _first_seen, _order, machine, tenant, found in entries[1:]:
                new = "%s_%s" % (name, tenant["name"])
                if new in taken:
                    new = "%s_%s" % (new, str(machine.get("id") or "")[:8])
                if new in taken:
                    new = "%s_%s" % (name, machine.get("id"))
                taken.add(new)
                out.append((new, machine, tenant, found))
                clashes.append((name, keeper, tenant, new))
        self._warn_clashes(clashes, reserved)
        return interleaved(out, [tenant for tenant, _hosts, _found in chosen])

    def _warn_clashes(self, clashes, reserved=()):
        for name, keeper, tenant, new in clashes[:MAX_DUPLICATE_WARNINGS]:
            first, other, seen = keeper[3]["name"], tenant["name"], quoted(keeper[2].get("firstSeen"), 40)
            text = "mde_machines: tenants %s and %s each have a machine named %s: tenant %s's, first seen %s, keeps "
            text += "the name; tenant %s's is the host %s."
            self.display.warning(text % (first, other, quoted(name, NAME_LIMIT), first, seen, other,
                                         quoted(new, NAME_LIMIT)))
        if len(clashes) > MAX_DUPLICATE_WARNINGS:
            self.display.warning("mde_machines: %d more machines have the name of another tenant's machine and are "
                                 "named <name>_<tenant>." % (len(clashes) - MAX_DUPLICATE_WARNINGS))
        for name, own, claim in reserved[:MAX_DUPLICATE_WARNINGS]:
            self.display.warning("mde_machines: tenant %s has a machine named %s, which ends in another tenant's "
                                 "label: such names are kept for that tenant's renamed hosts, so it is the host %s."
                                 % (own, quoted(name, NAME_LIMIT), quoted(claim, NAME_LIMIT)))
        if len(reserved) > MAX_DUPLICATE_WARNINGS:
            self.display.warning("mde_machines: %d more machines have a name ending in another tenant's label and are "
                                 "named <name>_<their tenant>." % (len(reserved) - MAX_DUPLICATE_WARNINGS))

    def _add_vulnerabilities(self, name, hostvars, found, groups):
        """mde_missing_kbs and mde_vulnerabilities for one host, and its mde_missing_kb_KB<n> / critical groups."""
        hostvars["mde_missing_kbs"] = untrusted(list(found.get("missing_kbs") or []))
        hostvars["mde_vulnerabilities"] = untrusted([dict(v) for v in found.get("vulnerabilities") or []])
        if not groups:
            return
        for kb in hostvars["mde_missing_kbs"]:
            group = self._sanitize_group_name("mde_missing_kb_KB%s" % kb)
            self.inventory.add_child(self.inventory.add_group(group), name)
        if any(v.get("severity") == "Critical" and tvm.is_exploitable(v.get("exploitability"))
               for v in hostvars["mde_vulnerabilities"]):
            self.inventory.add_child(self.inventory.add_group("mde_critical_exploitable"), name)

    def _warn_left_out(self, left_out, unnamed, of=""):
        for machine, name, winner in left_out[:MAX_DUPLICATE_WARNINGS]:
            self.display.warning(
                "mde_machines: machine %s%s (last seen %s) is left out: its name %s is taken by machine %s, seen more "
                "recently (%s)." % (quoted(machine.get("id"), 60), of, quoted(machine.get("lastSeen"), 40), name,
                                    quoted(winner.get("id"), 60), quoted(winner.get("lastSeen"), 40)))
        if len(left_out) > MAX_DUPLICATE_WARNINGS:
            self.display.warning("mde_machines: %d more machines%s are left out because a more recently seen machine "
                                 "has their name." % (len(left_out) - MAX_DUPLICATE_WARNINGS, of))
        if unnamed:
            self.display.warning("mde_machines: %d machines%s have no value for any of the hostnames preferences and are "
                                 "left out (first: %s)." % (len(unnamed), of, ", ".join(
                                     quoted(m.get("id"), 60) for m in unnamed[:5])))
