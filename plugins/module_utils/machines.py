# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Machine tags and device value: validation, planning and reading machines by id.

Plain Python (no Ansible import), used by the mde_machine module. Paths, bodies and limits are those of
Microsoft's API reference (https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-machine-tags,
https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-multiple-machine-tags,
https://learn.microsoft.com/en-us/defender-endpoint/api/set-device-value):
``POST /api/machines/{id}/tags`` ``{"Value", "Action"}``,
``POST /api/machines/AddOrRemoveTagForMultipleMachines`` ``{"Value", "Action", "MachineIds"}`` (at most
500 ids) and ``POST /api/machines/{id}/setDeviceValue`` ``{"DeviceValue"}``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


from ansible_collections.defender.endpoint.plugins.module_utils import odata

DEVICE_VALUES = ("Normal", "Low", "High")
STATES = ("present", "absent")
# MachineIds per AddOrRemoveTagForMultipleMachines call (at most 500:
# https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-multiple-machine-tags).
BULK_TAG_MAX = 500
# Ids per "id eq 'a' or id eq 'b' ..." filter when reading machines by id: about 3 KB of URL each.
ID_CHUNK = 50
# From this many ids on, one listing of every machine (10,000 a page) costs no more calls than reading them
# 50 at a time would for a tenant of up to 100,000 machines (10 calls either way), and fewer for smaller tenants.
FULL_LISTING_FROM = 500
# A machine id is the 40-hexadecimal-character device id (the Machine entity's ``id``:
# https://learn.microsoft.com/en-us/defender-endpoint/api/machine and the examples of
# https://learn.microsoft.com/en-us/defender-endpoint/api/get-machine-by-id).
MACHINE_ID_RE = odata.MACHINE_ID_RE
MACHINE_ID_FORM = "a Defender device id, 40 hexadecimal characters such as 1e5bc9d7e413ddd7902c2932e418702b84d0cc07"
# The tags endpoints document a tag only as a string
# (https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-machine-tags) and no length; a tag is a label
# typed in the portal, and this collection refuses one longer than this before it reaches the API.
TAG_MAX_LENGTH = 200


def check_machine_id(value, option="machine_id"):
    """The machine id given in ``option``, stripped and lower-cased; ValueError naming the option unless it is a
    Defender device id (so nothing but 40 hexadecimal characters ever reaches a URL path)."""
    return odata.check_id(value, option, MACHINE_ID_RE, MACHINE_ID_FORM).lower()


def check_machine_ids(values, option="machine_ids"):
    """``check_machine_id`` for every item of a list; one error naming the first few bad items and their count."""
    if values is not None and not values:
        raise ValueError("%s must list at least one machine id" % option)
    checked = odata.check_ids(values, option, MACHINE_ID_RE, MACHINE_ID_FORM)
    return None if checked is None else [i.lower() for i in checked]


def check_machine_name(value, option="machine_name"):
    """A computer DNS name given in ``option``, stripped; ValueError when empty or holding control characters."""
    if value is None or not str(value).strip():
        raise ValueError("%s must not be empty" % option)
    if odata.CONTROL_RE.search(str(value)):
        raise ValueError("%s must not contain control characters such as CR, LF or NUL, got %s"
                         % (option, odata.shown(value)))
    return str(value).strip()


def check_tags(tags, option="tags"):
    """ValueError naming ``option`` for an empty tag, one with control characters, or one longer than
    TAG_MAX_LENGTH characters; the first few such items and their count."""
    empty, control, long_ = [], [], []
    for n, tag in enumerate(tags or [], start=1):
        if tag is None or not str(tag).strip():
            empty.append(n)
        elif odata.CONTROL_RE.search(str(tag)):
            control.append((n, tag))
        elif len(str(tag)) > TAG_MAX_LENGTH:
            long_.append((n, tag))
    if empty:
        raise ValueError("%s must not contain an empty tag (item %s)" % (option, odata.summary(empty, show=str)))
    if control:
        raise ValueError("%s must not contain control characters such as CR, LF or NUL: %s" % (
            option, odata.summary(control, show=lambda t: "item %d %s" % (t[0], odata.shown(t[1])))))
    if long_:
        raise ValueError("%s must be at most %d characters long: %s" % (option, TAG_MAX_LENGTH, odata.summary(
            long_, show=lambda t: "item %d has %d" % (t[0], len(t[1])))))


def validate(machine_ids=None, tags=None, state="present", purge_tags=False):
    """Raise ValueError for ids and tags the API would refuse, or options that do not go together, that mde_machine's
    argument spec cannot say (it has the choices, which options go together and which one needs another; the machine
    target group checks machine_id and machine_name). Makes no call."""
    if machine_ids is not None:
        check_machine_ids(machine_ids)
    if purge_tags and state == "absent":
        raise ValueError("purge_tags is only used with state: present")
    check_tags(tags)


def plan_tags(current, tags, state="present", purge_tags=False):
    """(tags to add, tags to remove) for a machine whose ``machineTags`` are ``current``.

    Tags are compared exactly (case-sensitively), as the API's own tag lookups do.
    """
    current = list(current or [])
    wanted = odata.unique(tags or [])
    if state == "absent":
        return [], [t for t in wanted if t in current]
    add = [t for t in wanted if t not in current]
    remove = odata.unique(t for t in current if t not in wanted) if purge_tags else []
    return add, remove


def tags_after(current, add, remove):
    """``machineTags`` after removing ``remove`` and adding ``add`` (appended, as the API shows them)."""
    return [t for t in (current or []) if t not in remove] + [t for t in add if t not in (current or [])]


def bulk_calls(plans, tags=None, size=BULK_TAG_MAX):
    """Bodies of AddOrRemoveTagForMultipleMachines calls for ``plans`` (list of (machine id, add, remove)).

    One call per tag and action with the ids that need it, at most ``size`` ids each: removals first, in the
    order the tags are first met, then additions in the order of ``tags``.
    """
    groups = {}
    order = []
    for machine_id, add, remove in plans:
        for action, names in (("Remove", remove), ("Add", add)):
            for tag in names:
                key = (action, tag)
                if key not in groups:
                    groups[key] = []
                    order.append(key)
                groups[key].append(machine_id)
    rank = dict((t, i) for i, t in reversed(list(enumerate(tags or []))))
    order.sort(key=lambda k: (0, 0) if k[0] == "Remove" else (1, rank.get(k[1], len(rank))))  # stable sort
    bodies = []
    for action, tag in order:
        for part in odata.chunks(groups[(action, tag)], size):
            bodies.append({"Value": tag, "Action": action, "MachineIds": part})
    return bodies


# -- writes: each reconciled when its answer is lost (the client reads back, then sends once more or reports) -------
def tag_applied(machine, tag, action):
    """Whether ``machine`` shows the tag change: has the tag after Add, lacks it after Remove."""
    present = tag in ((machine or {}).get("machineTags") or [])
    return present if action == "Add" else not present


def read_machine(client, machine_id):
    """The Machine entity by id (https://learn.microsoft.com/en-us/defender-endpoint/api/get-machine-by-id)."""
    return odata.entity(client.get("/api/machines/%s" % odata.path_segment(machine_id)))


def change_tag(client, machine_id, tag, action):
    """``POST /api/machines/{id}/tags`` (https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-machine-tags);
    the API's answer (the machine). Reading back: the machine has (Add) or lacks (Remove) the tag."""

    def reconcile():
        machine = read_machine(client, machine_id)
        return machine if tag_applied(machine, tag, action) else None

    return client.post("/api/machines/%s/tags" % odata.path_segment(machine_id), json={"Value": tag, "Action": action},
                       reconcile=reconcile)


def change_tags_of_many(client, body):
    """``POST /api/machines/AddOrRemoveTagForMultipleMachines`` with one body of bulk_calls()
    (https://learn.microsoft.com/en-us/defender-endpoint/api/add-or-remove-multiple-machine-tags); the API's answer.
    Reading back: every listed machine has (Add) or lacks (Remove) the tag; the answer is then ``{"value": machines}``."""

    def reconcile():
        found = read_by_ids(client, body["MachineIds"])
        machines = [found.get(str(i).lower()) for i in body["MachineIds"]]
        if all(m is not None and tag_applied(m, body["Value"], body["Action"]) for m in machines):
            return {"value": machines}
        return None

    return client.post("/api/machines/AddOrRemoveTagForMultipleMachines", json=body, reconcile=reconcile)


def set_device_value(client, machine_id, value):
    """``POST /api/machines/{id}/setDeviceValue`` (https://learn.microsoft.com/en-us/defender-endpoint/api/set-device-value);
    the API's answer (the machine). Reading back: the machine's deviceValue is ``value``."""

    def reconcile():
        machine = read_machine(client, machine_id)
        return machine if machine.get("deviceValue") == value else None

    return client.post("/api/machines/%s/setDeviceValue" % odata.path_segment(machine_id),
                       json={"DeviceValue": value}, reconcile=reconcile)


def read_by_ids(client, ids, chunk=ID_CHUNK, full_listing_from=FULL_LISTING_FROM):
    """Machine entities by id: dict of lower-cased id -> entity; ids the API does not know are absent.

    Up to ``full_listing_from`` ids are read ``chunk`` at a time (``$filter=id eq .. or ..``); more are found
    in one listing of every machine, which the client reads 10,000 a page.
    """
    ordered = odata.unique(str(i).lower() for i in ids)
    wanted = set(ordered)
    found = {}
    if len(wanted) >= full_listing_from:
        for machine in client.list("/api/machines", empty_on_404=True):
            key = str(machine.get("id")).lower()
            if key in wanted:
                found[key] = machine
        return found
    return odata.read_by_ids(client, "/api/machines", ordered, chunk=chunk, empty_on_404=True)


def machines_in(response):
    """The machines of a response that is a collection (``value``) or one entity."""
    if isinstance(response, dict) and isinstance(response.get("value"), list):
        return [odata.entity(m) for m in response["value"] if isinstance(m, dict) and m.get("id")]
    if isinstance(response, dict) and response.get("id"):
        return [odata.entity(response)]
    return []


# -- looking machines up: one place for every caller (modules, roles' list forms, the inventory) -----------------
def machines_named(client, machine_name, read=None):
    """Machines whose computerDnsName is ``machine_name`` (case-insensitive), or whose first DNS label is, when
    ``machine_name`` has no dot. One filtered list call (startswith on the first label). ``read``: a list that gets
    every computerDnsName the call read, matching or not (closest_names() suggests from them)."""
    name = check_machine_name(machine_name).lower()
    first_label = name.split(".", 1)[0]
    found = list(client.list("/api/machines", empty_on_404=True,
                             odata_filter="startswith(computerDnsName,%s)" % odata.quote(first_label)))
    if read is not None:
        read.extend(m["computerDnsName"] for m in found if isinstance(m.get("computerDnsName"), str))
    return [m for m in found if name == (m.get("computerDnsName") or "").lower()
            or ("." not in name and name == (m.get("computerDnsName") or "").lower().split(".", 1)[0])]


def closest_names(machine_name, names, count=3):
    """Up to ``count`` of ``names`` (computerDnsNames already read) closest to ``machine_name`` (difflib's ratio,
    0.6 at least), for a message: compared by first DNS label when ``machine_name`` has no dot."""
    import difflib
    wanted = (machine_name or "").lower()
    by_key = {}
    for name in names:
        key = name.lower() if "." in wanted else name.lower().split(".", 1)[0]
        if key != wanted:
            by_key.setdefault(key, name)
    return [by_key[key] for key in difflib.get_close_matches(wanted, list(by_key), n=count, cutoff=0.6)]


def closest_text(names):
    """`` Closest names read: a, b.`` (API text, quoted), or nothing."""
    from ansible_collections.defender.endpoint.plugins.module_utils.errors import quoted
    return " Closest names: %s." % ", ".join(quoted(n, 260) for n in names) if names else ""


def find_machine(client, machine_id=None, machine_name=None, onboarded_only=True):
    """_find_machine()'s Machine, its id checked to have the documented shape (40 hexadecimal characters) before any
    caller puts it in a URL (odata.answer_id)."""
    machine = _find_machine(client, machine_id, machine_name, onboarded_only)
    odata.answer_id(machine, "machine")
    return machine


def _find_machine(client, machine_id=None, machine_name=None, onboarded_only=True):
    """One Machine entity by id (https://learn.microsoft.com/en-us/defender-endpoint/api/get-machine-by-id), or by
    computerDnsName, case-insensitive. MDENotFound or MDEAmbiguous (with ``candidates``) otherwise.

    ``machine_id`` is checked to be a device id (40 hexadecimal characters) before any call, so that no other text
    (``.``, ``..``, a path or a query) can reach the URL.
    """
    from ansible_collections.defender.endpoint.plugins.module_utils.errors import (
        MDEAmbiguous, MDEError, MDENotFound)
    if machine_id:
        machine_id = check_machine_id(machine_id)
        try:
            return odata.entity(client.get("/api/machines/%s" % odata.path_segment(machine_id)))
        except MDEError as e:
            if e.status == 404:
                facts = e.to_dict()
                raise MDENotFound("No machine with id %s in Defender for Endpoint." % machine_id,
                                  status=facts.pop("status", None), code=facts.pop("error_code", None),
                                  api_message=facts.pop("error_message", None), method=e.method, path=e.path)
            raise
    read = []
    candidates = machines_named(client, machine_name, read)
    if onboarded_only:
        onboarded = [m for m in candidates if (m.get("onboardingStatus") or "").lower() == "onboarded"]
    else:
        onboarded = candidates
    if not onboarded:
        extra = ""
        if candidates:
            extra = " (%d not onboarded: %s)" % (len(candidates), odata.summary(
                candidates, show=lambda m: "%s [%s]" % (m.get("id"), m.get("onboardingStatus"))))
        closest = [] if candidates else closest_names(machine_name, read)
        raise MDENotFound("No onboarded machine named %s in Defender for Endpoint%s.%s" % (
            machine_name, extra, closest_text(closest)), **({"closest_names": closest} if closest else {}))
    if len(onboarded) > 1:
        raise MDEAmbiguous("%d onboarded machines are named %s; use machine_id to pick one: %s." % (
            len(onboarded), machine_name, odata.summary(
                onboarded, show=lambda m: "%s (%s, last seen %s)" % (m.get("id"), m.get("computerDnsName"),
                                                                     m.get("lastSeen")), sep="; ")),
            candidates=[m.get("id") for m in onboarded])
    return onboarded[0]
