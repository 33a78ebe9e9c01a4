# -*- coding: utf-8 -*-
# Copyright: (c) 2026, defender.endpoint contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The inventory's memo of pure Jinja expressions: each evaluated once per combination of the host variables it reads.

Controller-only, used by the mde_machines inventory plugin for compose, groups, keyed_groups and hostnames; jinja2
(ansible-core's) parses an expression to decide whether it is pure. No Ansible import: the plugin passes the
evaluation in (``compute``), so the memo decides only when to call it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy

try:
    from jinja2 import Environment as JinjaEnvironment, nodes as jinja_nodes
    from jinja2.parser import Parser as JinjaParser
    HAS_JINJA_PARSER = True
except ImportError:  # pragma: no cover - jinja2 comes with ansible-core
    HAS_JINJA_PARSER = False


# Jinja expressions of compose, groups, keyed_groups and hostnames are evaluated per host. ansible-core compiles an
# expression again at every evaluation (about 1 ms), which at 100,000 hosts is minutes. An expression built only from
# the nodes, filters and tests below, over host variables with plain values, gives one result per combination of
# those values, so it is evaluated once per combination: `mde_os_platform.startswith('Windows')` runs six times, not
# once per host. Anything else (lookups, other filters, magic variables) is evaluated per host as usual.
PURE_FILTERS = frozenset((
    "abs", "b64decode", "b64encode", "basename", "bool", "capitalize", "center", "count", "d", "default", "dict2items",
    "dirname", "first", "flatten", "float", "format", "from_json", "from_yaml", "hash", "int", "items2dict", "join",
    "last", "length", "list", "lower", "lstrip", "map", "max", "min", "regex_escape", "regex_findall", "regex_replace",
    "regex_search", "reject", "rejectattr", "replace", "reverse", "rstrip", "select", "selectattr", "sort", "split",
    "splitext", "string", "strip", "sum", "ternary", "title", "to_json", "to_yaml", "trim", "truncate", "union",
    "unique", "upper", "wordcount", "difference", "intersect", "zip", "batch", "slice", "urlsplit",
))
PURE_TESTS = frozenset((
    "boolean", "contains", "defined", "divisibleby", "eq", "equalto", "escaped", "even", "false", "float", "ge", "gt",
    "in", "integer", "iterable", "le", "lower", "lt", "mapping", "match", "ne", "none", "number", "odd", "regex",
    "sameas", "search", "sequence", "string", "true", "undefined", "upper", "version", "version_compare", "subset",
    "superset", "any", "all",
))
if HAS_JINJA_PARSER:
    PURE_NODES = (
        jinja_nodes.Template, jinja_nodes.Output, jinja_nodes.TemplateData, jinja_nodes.Name, jinja_nodes.Const,
        jinja_nodes.Getattr, jinja_nodes.Getitem, jinja_nodes.Slice, jinja_nodes.Compare, jinja_nodes.Operand,
        jinja_nodes.CondExpr, jinja_nodes.And, jinja_nodes.Or, jinja_nodes.Not, jinja_nodes.Neg, jinja_nodes.Pos,
        jinja_nodes.BinExpr, jinja_nodes.Concat, jinja_nodes.Tuple, jinja_nodes.List, jinja_nodes.Dict,
        jinja_nodes.Pair, jinja_nodes.Keyword, jinja_nodes.Call, jinja_nodes.Filter, jinja_nodes.Test,
    )
MEMO_GIVE_UP = 5000  # stop remembering an expression's results after this many misses with fewer hits


def freeze(value):
    """A hashable stand-in for a plain host variable value; TypeError for anything else."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return (type(value).__name__, value)
    if isinstance(value, (list, tuple)):
        return ("list",) + tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return ("dict",) + tuple(sorted((str(k), freeze(v)) for k, v in value.items()))
    raise TypeError(type(value).__name__)


def pure_variables(source, expression):
    """The variable names a pure Jinja expression (or template) reads, or None when it is not pure."""
    if not HAS_JINJA_PARSER or not isinstance(source, str):
        return None
    try:
        env = JinjaEnvironment()
        if expression:
            tree = JinjaParser(env, source, state="variable").parse_expression()
        else:
            tree = env.parse(source)
    except Exception:  # pylint: disable=broad-except
        return None
    names = set()
    for node in [tree] + list(tree.find_all(jinja_nodes.Node)):
        if not isinstance(node, PURE_NODES):
            return None
        if isinstance(node, jinja_nodes.Name):
            if node.ctx != "load":
                return None
            names.add(node.name)
        elif isinstance(node, jinja_nodes.Call):
            if not isinstance(node.node, jinja_nodes.Getattr) or node.dyn_args or node.dyn_kwargs:
                return None  # only method calls such as mde_os_platform.startswith('Windows')
        elif isinstance(node, jinja_nodes.Filter):
            if node.name not in PURE_FILTERS:
                return None
        elif isinstance(node, jinja_nodes.Test):
            if node.name not in PURE_TESTS:
                return None
    return tuple(sorted(names))


class Memo:
    """Results of pure expressions per combination of the values they read (see PURE_FILTERS)."""

    def __init__(self):
        self.plans = {}
        self.results = {}
        self.stats = {}

    def evaluate(self, source, variables, compute, expression=True):
        plan = self.plans.get(source, False)
        if plan is False:
            plan = self.plans[source] = pure_variables(source, expression)
        if plan is None or any(name not in variables for name in plan):
            return compute()
        try:
            key = (source, tuple(freeze(variables[name]) for name in plan))
            hit = self.results.get(key, self)
        except TypeError:
            return compute()
        if hit is not self:
            self.stats[source][0] += 1
            return copy.deepcopy(hit) if isinstance(hit, (list, dict)) else hit
        stats = self.stats.setdefault(source, [0, 0])
        stats[1] += 1
        result = compute()  # an exception is not remembered: the next host tries again
        if stats[1] > MEMO_GIVE_UP and stats[1] > stats[0]:
            self.plans[source] = None  # mostly distinct values: remembering costs memory and saves nothing
            for k in [k for k in self.results if k[0] == source]:
                del self.results[k]
        else:
            self.results[key] = copy.deepcopy(result) if isinstance(result, (list, dict)) else result
        return result
