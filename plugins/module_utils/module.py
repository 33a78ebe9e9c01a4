# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""MDEModule: the AnsibleModule every module of the collection is built on.

It holds the shared argument spec (documented once in the defender.endpoint.auth doc fragment),
builds the client on first use, and turns client errors into fail_json with the same facts.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.defender.endpoint.plugins.module_utils.client import (
    HAS_REQUESTS,
    REQUESTS_IMPORT_ERROR,
    create_client,
)
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEDependencyError, MDEError
from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils import machines as machines_utils

AUTH_ARGUMENT_SPEC = dict(
    tenant_id=dict(type="str", fallback=(env_fallback, ["MDE_TENANT_ID", "AZURE_TENANT_ID", "AZURE_TENANT"])),
    client_id=dict(type="str", fallback=(env_fallback, ["MDE_CLIENT_ID", "AZURE_CLIENT_ID"])),
    client_secret=dict(type="str", no_log=True,
                       fallback=(env_fallback, ["MDE_CLIENT_SECRET", "AZURE_CLIENT_SECRET", "AZURE_SECRET"])),
    client_certificate_path=dict(type="path",
                                 fallback=(env_fallback, ["MDE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PATH"])),
    client_certificate_password=dict(type="str", no_log=True,
                                     fallback=(env_fallback, ["MDE_CLIENT_CERTIFICATE_PASSWORD",
                                                              "AZURE_CLIENT_CERTIFICATE_PASSWORD"])),
    access_token=dict(type="str", no_log=True, fallback=(env_fallback, ["MDE_ACCESS_TOKEN"])),
    cloud=dict(type="str", default="global", choices=["global", "gcc", "gcc_high", "dod"],
               fallback=(env_fallback, ["MDE_CLOUD"])),
    api_url=dict(type="str", fallback=(env_fallback, ["MDE_API_URL"])),
    authority_host=dict(type="str", fallback=(env_fallback, ["MDE_AUTHORITY_HOST", "AZURE_AUTHORITY_HOST"])),
    validate_certs=dict(type="bool", default=True, fallback=(env_fallback, ["MDE_VALIDATE_CERTS"])),
    ca_path=dict(type="path", fallback=(env_fallback, ["MDE_CA_PATH"])),
    timeout=dict(type="int", default=30, fallback=(env_fallback, ["MDE_TIMEOUT"])),
    token_cache=dict(type="bool", default=True, fallback=(env_fallback, ["MDE_TOKEN_CACHE"])),
)


class MDEModule(AnsibleModule):
    """AnsibleModule plus the shared options, a lazily built MDEClient and error mapping."""

    def __init__(self, argument_spec=None, **kwargs):
        spec = dict(AUTH_ARGUMENT_SPEC)
        spec.update(argument_spec or {})
        kwargs.setdefault("supports_check_mode", True)
        super(MDEModule, self).__init__(argument_spec=spec, **kwargs)
        if not HAS_REQUESTS:
            self.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
        self._client = None

    def fail_json(self, msg=None, **kwargs):
        # ansible-core reports only the first validation error. For a list of dictionaries given a string, that
        # one is "dictionary requested, could not parse JSON or key=value", which names no option; the errors
        # after it do. Until the module is built (no _client yet), prefer the errors that name an option.
        checked = getattr(self, "validation_result", None)
        if checked is not None and not hasattr(self, "_client") and checked.error_messages and \
                msg == checked.errors.msg and "option" not in (msg or ""):
            named = []
            for text in checked.error_messages:
                if "option" in text and text not in named:
                    named.append(text)
            if named:
                msg = "; ".join(named)
        self._client_warnings()
        super(MDEModule, self).fail_json(msg=msg, **kwargs)

    @property
    def client(self):
        if self._client is None:
            opts = dict((k, self.params.get(k)) for k in AUTH_ARGUMENT_SPEC)
            self._client = create_client(**opts)
        return self._client

    def fail_error(self, error, **result):
        """fail_json for an MDEError: its one-sentence message plus status, error code, method and path."""
        if isinstance(error, MDEDependencyError):
            self.fail_json(msg=missing_required_lib(error.library), **result)
        facts = error.to_dict()
        facts.update(result)
        self.fail_json(msg=str(error), **facts)

    def run(self, main, permission=None):
        """Call ``main(self)``, which returns the result dict; exit with it, or fail with a clear message.

        ``permission``: the application permission the module as a whole needs. A 403 on a call that a weaker
        permission allows (a read before the write) then names that one too, not only the read's.
        """
        try:
            result = main(self)
        except MDEError as e:
            if permission and e.status == 403 and e.permission != permission:
                e.message = "%s %s needs the application permission %s." % (e, self._name, permission)
                e.permission = permission
            self.fail_error(e)
        except ValueError as e:
            self.fail_json(msg=str(e))
        except Exception as e:  # pylint: disable=broad-except
            self.fail_json(msg="Unexpected error: %s: %s" % (type(e).__name__, e), exception=traceback.format_exc())
        self.exit_json(**result)

    def exit_json(self, **kwargs):
        self._client_warnings()
        super(MDEModule, self).exit_json(**kwargs)

    def _client_warnings(self):
        for text in getattr(getattr(self, "_client", None), "warnings", None) or []:
            self.warn(text)

    # -- helpers shared by several modules -------------------------------------------------------------
    def checked(self, check, *args, **kwargs):
        """``check(*args, **kwargs)``'s result; its ValueError (a sentence naming the option) fails the task.

        For validation in ``main()``, before ``run``: a failure here makes no API call at all."""
        try:
            return check(*args, **kwargs)
        except ValueError as e:
            text = str(e)
            self.fail_json(msg=text if text.endswith(".") else text + ".")

    def fail_partway(self, error, done, total, noun, rerun=None):
        """Fail after part of a list was written: how many and which (``updated_ids``), and what a re-run does."""
        text = str(error)
        rerun = rerun or "re-running the task is safe: it reads the current state and changes only what still differs"
        self.fail_json(msg="%s%s %d of the %d %s to change had been changed before this call (updated_ids lists "
                           "them); %s." % (text, "" if text.endswith(".") else ".", len(done), total, noun, rerun),
                       changed=bool(done), updated_ids=list(done), **error.to_dict())

    def machines_named(self, machine_name):
        """Machines whose computerDnsName is ``machine_name`` (case-insensitive), or whose first DNS label is,
        when ``machine_name`` has no dot. One filtered list call (startswith on the first label)."""
        name = machines_utils.check_machine_name(machine_name).lower()
        first_label = name.split(".")[0]
        found = self.client.list("/api/machines", empty_on_404=True,
                                 odata_filter="startswith(computerDnsName,%s)" % odata.quote(first_label))
        return [m for m in found if name == (m.get("computerDnsName") or "").lower()
                or ("." not in name and name == (m.get("computerDnsName") or "").lower().split(".")[0])]

    def find_machine(self, machine_id=None, machine_name=None, onboarded_only=True):
        """One Machine entity by id, or by computerDnsName (case-insensitive). Fails clearly otherwise.

        ``machine_id`` is checked to be a device id (40 hexadecimal characters) before any call, so that no other
        text (``.``, ``..``, a path or a query) can reach the URL.
        """
        if machine_id:
            machine_id = self.checked(machines_utils.check_machine_id, machine_id)
            try:
                return odata.entity(self.client.get("/api/machines/%s" % odata.path_segment(machine_id)))
            except MDEError as e:
                if e.status == 404:
                    self.fail_json(msg="No machine with id %s in Defender for Endpoint." % machine_id,
                                   **e.to_dict())
                raise
        candidates = self.machines_named(machine_name)
        if onboarded_only:
            onboarded = [m for m in candidates if (m.get("onboardingStatus") or "").lower() == "onboarded"]
        else:
            onboarded = candidates
        if not onboarded:
            extra = ""
            if candidates:
                extra = " (%d not onboarded: %s)" % (len(candidates), odata.summary(
                    candidates, show=lambda m: "%s [%s]" % (m.get("id"), m.get("onboardingStatus"))))
            self.fail_json(msg="No onboarded machine named %s in Defender for Endpoint%s." % (machine_name, extra))
        if len(onboarded) > 1:
            self.fail_json(msg="%d onboarded machines are named %s; use machine_id to pick one: %s." % (
                len(onboarded), machine_name, odata.summary(
                    onboarded, show=lambda m: "%s (%s, last seen %s)" % (m.get("id"), m.get("computerDnsName"),
                                                                          m.get("lastSeen")), sep="; ")),
                candidates=[m.get("id") for m in onboarded])
        return onboarded[0]
