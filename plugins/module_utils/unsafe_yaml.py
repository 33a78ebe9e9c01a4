# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Text from the API written ``!unsafe`` when ansible-rulebook hands an event of the collection's sources to
ansible-playbook (see below). Plain Python: no Ansible import; PyYAML when it is there."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import logging
import threading

from ansible_collections.defender.endpoint.plugins.module_utils import errors


# -- untrusted text ---------------------------------------------------------------------------------------
# Alert text (title, description, machine and user names, evidence, ...) is written by whoever controls a device. When
# a rule runs a playbook (run_playbook, run_module), ansible-rulebook passes the event to ansible-playbook as extra
# vars: it writes them with PyYAML's yaml.dump() to <private data dir>/env/extravars, which ansible-runner passes as
# ``-e @file`` (https://docs.ansible.com/projects/runner/en/latest/intro/, "env/extravars"). ansible-core templates
# the strings of such a file when a play uses them, on every version: before 2.19 every variable value is templated
# on use, and from 2.19 a file given to ``-e @`` is trusted as a template
# (https://docs.ansible.com/ansible/latest/porting_guides/porting_guide_core_2.19.html). A title such as
# ``{{ lookup('pipe', 'id') }}`` would then run on the controller. A string tagged ``!unsafe`` is never templated
# (https://docs.ansible.com/ansible/latest/playbook_guide/playbooks_advanced_syntax.html#unsafe-or-raw-strings).
# The event crosses the rule engine as JSON, so it reaches yaml.dump() as plain str. Two marks, so that neither a
# flood of alerts nor a long wait in the rule engine lets a string through unmarked:
# - the document itself: when yaml.dump() writes a document holding an event of this source (a value under the key
#   ``mde_alert`` or ``mde_incident``, as ansible-rulebook's extra vars hold ``ansible_eda.event``), every string of
#   the document that contains one of that event's template-like strings is written as ``!unsafe "..."``. This needs
#   no memory of earlier alerts.
# - the source's memory of the template-like strings it emitted (the newest 10,000), for a document that quotes an
#   alert's text without carrying the event.
# Every other string is written exactly as before (ansible-rulebook's own templates, such as ``{{ module_result }}``
# in run_module's wrapper playbook, stay templates).
TEMPLATE_MARKERS = ("{{", "{%", "{#")   # Jinja's block, variable and comment starts, as ansible-core looks for them
UNSAFE_TAG = "!unsafe"


def template_like(text):
    """Whether ``text`` is a str that ansible-core would template (holds ``{{``, ``{%`` or ``{#``)."""
    return isinstance(text, str) and any(marker in text for marker in TEMPLATE_MARKERS)


def template_fields(value, path):
    """The ``(path, text)`` of every template-like string in ``value`` (keys included), depth first."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            where = "%s.%s" % (path, key)
            if template_like(key):
                found.append((where, key))
            found.extend(template_fields(item, where))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found.extend(template_fields(item, "%s[%d]" % (path, index)))
    elif template_like(value):
        found.append((path, value))
    return found


EVENT_KEYS = ("mde_alert", "mde_incident")   # the keys under which the sources put an entity in an event


def event_texts(value, depth=0):
    """The ``(path, text)`` of every template-like string under an EVENT_KEYS key anywhere in ``value``."""
    found = []
    if depth > 64:
        return found
    if isinstance(value, dict):
        for key, item in value.items():
            if key in EVENT_KEYS:
                found.extend(template_fields(item, key))
            else:
                found.extend(event_texts(item, depth + 1))
    elif isinstance(value, (list, tuple)):
        for item in value:
            found.extend(event_texts(item, depth + 1))
    return found


class UntrustedText:
    """The template-like strings the source emitted (the newest ``limit``), shared by every source in the process."""

    def __init__(self, limit=10000):
        self.limit = limit
        self._lock = threading.Lock()
        self._texts = {}   # insertion-ordered: the oldest is dropped first

    def add(self, text):
        with self._lock:
            self._texts.pop(text, None)
            self._texts[text] = True
            while len(self._texts) > self.limit:
                del self._texts[next(iter(self._texts))]

    def __len__(self):
        return len(self._texts)

    def taints(self, text):
        """Whether ``text`` is, or contains, a remembered string (a rulebook may have put one inside a longer one)."""
        if not template_like(text):
            return False
        with self._lock:
            texts = list(self._texts)
        return any(t in text for t in texts)


def install_yaml_marking():
    """Make yaml.dump() (yaml.Dumper) write every string that holds emitted alert text as ``!unsafe``.

    Returns the process's UntrustedText, or None when PyYAML is missing. ansible-rulebook runs each source file with
    runpy, so this function can run several times: the representer is installed once and carries its registry.
    """
    try:
        import yaml
    except ImportError:
        return None
    current = yaml.Dumper.yaml_representers.get(str)
    registry = getattr(current, "mde_untrusted", None)
    if registry is not None:
        return registry
    registry = UntrustedText()
    plain = current or yaml.representer.SafeRepresenter.represent_str

    def represent_str(dumper, data):
        in_document = template_like(data) and any(t in data for t in getattr(dumper, "mde_event_texts", ()))
        if in_document or registry.taints(data):
            return dumper.represent_scalar(UNSAFE_TAG, data, style='"')
        return plain(dumper, data)

    represent_str.mde_untrusted = registry
    yaml.add_representer(str, represent_str, Dumper=yaml.Dumper)
    document_represent = yaml.Dumper.represent

    def represent(dumper, data):
        # The event strings of this very document, for represent_str (see "untrusted text" above).
        dumper.mde_event_texts = [text for _where, text in event_texts(data)]
        try:
            return document_represent(dumper, data)
        finally:
            dumper.mde_event_texts = []

    yaml.Dumper.represent = represent
    return registry


def mark_untrusted(entity, registry, name, noun, event_key):
    """Remember the entity's template-like strings in ``registry``; log them once (a sign of a tampered device).
    ``name``, ``noun``, ``event_key``: the source's (its log lines start with its name)."""
    fields = template_fields(entity, event_key)
    if not fields:
        return
    for _where, text in fields:
        if registry is not None:
            registry.add(text)
    logging.getLogger("defender.endpoint." + name).warning(
        "%s: %s %s has template syntax (%s) in %s; passed on unchanged%s.", name, noun,
        errors.quoted(entity.get("id"), 200), ", ".join(TEMPLATE_MARKERS), ", ".join(sorted(set(w for w, _t in fields))),
        " and marked !unsafe for Ansible" if registry is not None else ", NOT marked unsafe (PyYAML is missing)")
