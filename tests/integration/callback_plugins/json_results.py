# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stdout callback for the integration tests: the whole run as one JSON document.

The same shape as ansible.posix's json callback (plays -> tasks -> hosts, stats), which is not part of
ansible-core and cannot be installed here from Galaxy.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: json_results
type: stdout
short_description: Print the run as one JSON document (test harness)
description:
  - Used by the collection's integration tests to read every task result.
'''

import json

from ansible.parsing.ajson import AnsibleJSONEncoder
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "json_results"

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.results = []

    def v2_playbook_on_play_start(self, play):
        self.results.append({"play": {"name": play.get_name()}, "tasks": []})

    def _task(self, task):
        self.results[-1]["tasks"].append({"task": {"name": task.get_name()}, "hosts": {}})

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._task(task)

    def _record(self, result, **flags):
        host = result._host.get_name()
        task_name = result._task.get_name()
        tasks = self.results[-1]["tasks"]
        entry = next((t for t in reversed(tasks) if t["task"]["name"] == task_name), None)
        if entry is None:
            self._task(result._task)
            entry = tasks[-1]
        data = dict(result._result)
        data.update(flags)
        entry["hosts"][host] = data

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        summary = dict((h, stats.summarize(h)) for h in sorted(stats.processed))
        self._display.display(json.dumps({"plays": self.results, "stats": summary}, cls=AnsibleJSONEncoder,
                                         indent=1, sort_keys=True))
