#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: mde_live_response
short_description: Run live response commands on a machine in Microsoft Defender for Endpoint and fetch their results
version_added: 0.1.0
description:
  - Starts a live response session on one machine that runs a list of commands (put a library file on the machine,
    run a library script, collect a file), waits until it is over, and downloads each command's result to the
    controller; RunScript transcripts are parsed into C(script_output), C(script_errors) and C(exit_code).
  - Results are downloaded from the short-lived pre-signed link the API hands out, without the bearer token; the
    link itself is never returned, logged or kept.
  - B(One session per machine) is the API's rule. When a session with the same commands is already C(Pending) or
    C(InProgress) on the machine, nothing is started, C(changed) is false and that session is waited for and
    returned. A different pending session fails the task, naming it.
  - B(A failed command fails the task), naming it, with its errors and (for RunScript) its transcript; the API runs
    none of the commands after it.
  - B(Limits shared by every fork of the controller.) The API allows 10 sessions to be started a minute and 25 to run
    at a time per tenant. Every fork takes a slot of the shared call budget before it starts a session and waits
    when there is none, so 50 forks over hundreds of machines meet neither an HTTP 429 nor a refused session.
    A session slot is held until the session is final; a slot whose process died is taken back.
  - The library files the commands need are checked to exist before the session starts (this needs
    C(Library.Manage); without it the check is skipped with a warning).
  - Needs the WindowsDefenderATP application permission C(Machine.LiveResponse) and C(Machine.Read.All) (or
    C(Machine.ReadWrite.All)) to find the machine, read its actions and get the results' links.
  - With O(wait) (the default), the task waits until the session is over and downloads the results; without it, the
    task returns once the session has started, and C(results) then only hold each command's status. O(wait_timeout)
    also bounds the wait for a free session slot; a re-run of the task with the same commands waits for the session
    again. A session on a machine that is offline is queued by the API for up to three days.
author:
  - defender.endpoint maintainers (@defender-endpoint)
extends_documentation_fragment:
  - defender.endpoint.auth
  - defender.endpoint.machine_target
  - defender.endpoint.wait
attributes:
  check_mode:
    support: full
    description: The machine, its pending sessions and the library are read; no session is started. C(msg) says
      what would run.
  diff_mode:
    support: none
    description: A session is not a state.
options:
  commands:
    description:
      - The commands of the session, in the order the API runs them; the API requires every V(PutFile) first, then
        every V(RunScript), then every V(GetFile).
    type: list
    elements: dict
    required: true
    suboptions:
      type:
        description: The command, as the API spells it.
        type: str
        required: true
        choices: [PutFile, RunScript, GetFile]
      script_name:
        description: With V(RunScript), the library script to run. It times out after 10 minutes.
        type: str
      args:
        description: With V(RunScript), the arguments passed to the script.
        type: str
      path:
        description: With V(GetFile), the path of the file to collect on the machine (for example
          C(C:\Windows\Temp\triage.zip)).
        type: str
      file_name:
        description: With V(PutFile), the library file to put in the machine's working folder.
        type: str
  comment:
    description: The comment recorded with the session (C(Comment)).
    type: str
  wait:
    default: true
  dest:
    description:
      - A directory on the controller for the results; created (mode 0700) when missing. Each session's results go
        to C(<dest>/<action id>/), named C(<index>-<file name>) for V(GetFile) and
        C(<index>-<script name>.transcript.json) for V(RunScript), mode 0600, written atomically.
      - Required when a command is V(GetFile). Without it, RunScript transcripts are read and not kept.
    type: path
notes:
  - Sessions started from the device page of the Defender portal do not appear in the machine actions API; when one
    is running the API refuses a new session (HTTP 400 C(ActiveRequestAlreadyExists)) and the task fails saying so.
seealso:
  - module: defender.endpoint.mde_library_file
  - name: Run live response commands on a device
    description: Microsoft's reference of the endpoint and its limits.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/run-live-response
  - name: Get live response results
    description: The result download links and the RunScript result format.
    link: https://learn.microsoft.com/en-us/defender-endpoint/api/get-live-response-result
'''

EXAMPLES = r'''
- name: Run a triage script and collect what it produced
  defender.endpoint.mde_live_response:
    machine_name: ws-00000.contoso.local
    commands:
      - type: RunScript
        script_name: collect-triage.ps1
        args: "-Days 7"
      - type: GetFile
        path: C:\Windows\Temp\triage.zip
    comment: "Incident 4711: triage"
    dest: /var/evidence/ws-00000
  register: triage

- name: Show the script's exit code
  ansible.builtin.debug:
    msg: "{{ triage.results[0].exit_code }}"
'''

RETURN = r'''
machine_action:
  description:
    - The LiveResponse MachineAction entity as the API returns it (camelCase keys, with C(commands)); after O(wait),
      in its final state. V(null) in check mode when a session would be started.
  returned: always
  type: dict
results:
  description: One entry per command, in order.
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: The command's index in the session.
      type: int
    type:
      description: C(PutFile), C(RunScript) or C(GetFile).
      type: str
    status:
      description: The command's status (C(Created), C(Completed), C(Failed)).
      type: str
    errors:
      description: The command's errors as the API reports them.
      type: list
      elements: str
    script_name:
      description: RunScript's script.
      type: str
    script_output:
      description: RunScript's transcript (standard output).
      type: str
    script_errors:
      description: RunScript's error output.
      type: str
    exit_code:
      description: RunScript's exit code.
      type: int
    remote_path:
      description: GetFile's path on the machine.
      type: str
    path:
      description: The result's file on the controller (GetFile's file; RunScript's transcript with O(dest)).
      type: str
    sha256:
      description: SHA-256 of the downloaded result.
      type: str
    size:
      description: Size in bytes of the downloaded result.
      type: int
'''

import os

from ansible_collections.defender.endpoint.plugins.module_utils import library
from ansible_collections.defender.endpoint.plugins.module_utils import live_response as lr
from ansible_collections.defender.endpoint.plugins.module_utils import machine_actions as ma
from ansible_collections.defender.endpoint.plugins.module_utils import machines as mu
from ansible_collections.defender.endpoint.plugins.module_utils import odata
from ansible_collections.defender.endpoint.plugins.module_utils import options
from ansible_collections.defender.endpoint.plugins.module_utils.connect import rate_limit_scale
from ansible_collections.defender.endpoint.plugins.module_utils.errors import MDEError, quoted
from ansible_collections.defender.endpoint.plugins.module_utils.module import MDEModule

PERMISSION = "Machine.LiveResponse"


def check_library(ctx, checked):
    """Fail before the session when a library file the commands need is missing."""
    names = lr.library_names(checked)
    if not names:
        return
    try:
        present = library.list_files(ctx.client)
    except MDEError as e:
        if e.status != 403:
            raise
        ctx.warn("The library files %s could not be checked before the session (the application lacks "
                 "Library.Manage); a missing one fails its command." % ", ".join(names))
        return
    missing = [n for n in names if library.find(present, n) is None]
    if missing:
        ctx.fail_json(msg="The live response library has no %s; no session was started. Upload %s with "
                      "defender.endpoint.mde_library_file first." % (
                          odata.summary(missing, show=str), "it" if len(missing) == 1 else "them"),
                      missing_library_files=missing)


def command_results(action, checked):
    out = []
    by_index = dict((c.get("index"), c) for c in action.get("commands") or [])
    for index, (ctype, values) in enumerate(checked):
        command = by_index.get(index) or {}
        entry = dict(index=index, type=ctype, status=command.get("commandStatus"),
                     errors=[str(e) for e in command.get("errors") or []])
        if ctype == "RunScript":
            entry["script_name"] = values["ScriptName"]
        elif ctype == "GetFile":
            entry["remote_path"] = values["Path"]
        out.append(entry)
    return out


def fetch_results(ctx, action, checked, results, dest_dir):
    for entry, (ctype, values) in zip(results, checked):
        wanted = (ctype == "GetFile" and entry["status"] == "Completed") or (
            ctype == "RunScript" and entry["status"] in ("Completed", "Failed"))
        if not wanted:
            continue
        try:
            got = lr.fetch(ctx.client, action, entry["index"], ctype, values, dest_dir)
        except MDEError as e:
            if entry["status"] == "Failed" and e.status == 404:  # a script that never ran (time-out) has no transcript
                continue
            raise
        entry.update((k, v) for k, v in got.items() if k != "script_name" or v)


def failed_text(action, results):
    for entry in results:
        if entry["status"] == "Failed":
            what = "command %d (%s %s)" % (entry["index"], entry["type"], quoted(entry.get("script_name") or entry.get(
                "remote_path") or "", 260))
            # Device and API text: escaped and cut (errors.quoted); the whole transcript stays in the result and on disk.
            parts = [quoted("; ".join(str(e) for e in entry["errors"]))] if entry["errors"] else []
            if entry.get("exit_code") is not None:
                parts.append("exit code %s" % quoted(entry["exit_code"], 20))
            if entry.get("script_errors"):
                parts.append("script errors: %s" % quoted(str(entry["script_errors"]).strip()))
            if entry.get("script_output"):
                parts.append("transcript: %s" % quoted(str(entry["script_output"]).strip()))
            return "%s failed%s" % (what, ": " + "; ".join(parts) if parts else "")
    return ma.failure_text(action)


def finish(ctx, result, action, checked, slot=None):
    """Wait for the session, give its slot back, fetch the results, fail on a failed command."""
    p = ctx.params
    result["machine_action"] = action
    if not p["wait"]:
        if slot is not None:
            slot.hand_over(action["id"], lr.lease_for(checked))
        result["results"] = command_results(action, checked)
        return result
    try:
        # Polls are shortened with the rate-limit windows (MDE_RATE_LIMIT_SCALE < 1, an emulator's).
        action, done = lr.wait_for(ctx.client, action, p["wait_timeout"], scale=min(1.0, rate_limit_scale()),
                                   progress=ctx.waiting("live response session " + ma.describe(action),
                                                        (p["wait_timeout"], "wait_timeout")))
    except BaseException:
        if slot is not None:
            slot.hand_over(action["id"], lr.lease_for(checked))
        raise
    if slot is not None:
        if done:
            slot.release()
        else:
            slot.hand_over(action["id"], lr.lease_for(checked))
    result["machine_action"] = action
    results = result["results"] = command_results(action, checked)
    if not done:
        ctx.fail_json(msg="%s did not finish within wait_timeout (%d seconds); its status is %s. The session keeps "
                      "running; re-running the task with the same commands waits for it." % (
                          ma.describe(action), p["wait_timeout"], action.get("status")), **result)
    dest_dir = None
    if p["dest"]:
        # The folder is named after the action's id only once it has the documented shape (a GUID).
        dest_dir = os.path.join(p["dest"], odata.answer_id(action, "machine_action"))
        if not os.path.isdir(dest_dir):
            os.makedirs(dest_dir, 0o700)
    fetch_results(ctx, action, checked, results, dest_dir)
    if action.get("status") != "Succeeded":
        ctx.fail_json(msg="%s ended with status %s: %s." % (ma.describe(action), action.get("status"),
                                                            failed_text(action, results)), **result)
    return result


def run(ctx):
    p = ctx.params
    checked = lr.check_commands(p["commands"])
    body = lr.build_body(checked, p["comment"])
    machine = mu.find_machine(ctx.client, machine_id=p["machine_id"], machine_name=p["machine_name"])
    machine_id = machine["id"]
    result = dict(changed=False, machine_action=None, results=[])

    pending = lr.pending_sessions(ctx.client, machine_id)
    same = [a for a in pending if lr.same_commands(a, body)]
    if same:
        return finish(ctx, result, ma.latest(same), checked)
    if pending:
        other = ma.latest(pending)
        ctx.fail_json(msg="%s is already %s with other commands (%s); live response runs one session per machine. "
                      "Wait for it or cancel it first." % (ma.describe(other), other.get("status"),
                                                           lr.describe_commands(other)),
                      machine_action=other, results=[])
    check_library(ctx, checked)
    result["changed"] = True
    if ctx.check_mode:
        result["msg"] = "Would start a live response session on %s: %s." % (
            machine.get("computerDnsName") or machine_id, "; ".join(
                "%s %s" % (c["type"], " ".join("%s=%s" % (x["key"], x["value"]) for x in c["params"]))
                for c in body["Commands"]))
        result["results"] = [dict(index=i, type=t, status=None, errors=[]) for i, (t, _v) in enumerate(checked)]
        return result
    slot = lr.SessionSlot(ctx.client)
    slot.acquire(p["wait_timeout"], progress=ctx.waiting(
        "a free live response session slot (at most %d run at once from this controller)" % lr.MAX_SESSIONS,
        (p["wait_timeout"], "wait_timeout")))
    try:
        action = lr.start(ctx.client, machine_id, body, known_ids=[a.get("id") for a in pending])
    except MDEError as e:
        slot.release()
        if not ma.is_already_pending(e):
            raise
        now_pending = lr.pending_sessions(ctx.client, machine_id)
        same = [a for a in now_pending if lr.same_commands(a, body)]
        if same:
            return finish(ctx, dict(result, changed=False), ma.latest(same), checked)
        other = ma.latest(now_pending)
        ctx.fail_json(msg="%s %s" % (str(e), "The pending %s (%s) must finish or be cancelled first." % (
            ma.describe(other), lr.describe_commands(other)) if other else "No pending session shows in the machine "
            "actions API: one started from the device page of the Defender portal is running."),
            machine_action=other, results=[], **e.to_dict())
    except BaseException:
        slot.release()
        raise
    return finish(ctx, result, action, checked, slot)


ARGUMENT_SPEC = options.module_spec(options.MACHINE_TARGET, dict(
    commands=dict(type="list", elements="dict", required=True, options=dict(
        type=dict(type="str", required=True, choices=list(lr.TYPES)),
        script_name=dict(type="str"),
        args=dict(type="str"),
        path=dict(type="str"),
        file_name=dict(type="str"),
    )),
    comment=dict(type="str"),
), options.WAIT.refined(wait=dict(default=True)), dict(dest=dict(type="path")))
SPEC_OPTIONS = options.spec_rules(options.MACHINE_TARGET)


def validate(ctx):
    """Checks before any call."""
    p = ctx.params
    checked = ctx.checked(lr.check_commands, p["commands"])
    ctx.checked(options.MACHINE_TARGET.check, p)
    if p["comment"] is not None and not p["comment"].strip():
        ctx.fail_json(msg="comment must not be empty.")
    ctx.checked(options.WAIT.check, p)
    if any(t == "GetFile" for t, _v in checked):
        if not p["dest"]:
            ctx.fail_json(msg="dest is required with a GetFile command: the directory on the controller for the "
                              "collected files.")
        if not p["wait"]:
            ctx.fail_json(msg="GetFile needs wait: true; its file is downloaded once the session is over.")
    if p["dest"] and os.path.exists(p["dest"]) and not os.path.isdir(p["dest"]):
        ctx.fail_json(msg="dest: %s exists and is not a directory." % p["dest"])


def main():
    MDEModule.main(ARGUMENT_SPEC, run, validate=validate, permission=PERMISSION, **SPEC_OPTIONS)


if __name__ == "__main__":
    main()
