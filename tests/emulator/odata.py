"""A small OData v4 ``$filter`` parser and evaluator, plus ``$top``/``$skip`` handling.

Grammar (recursive descent)::

    expr     := and_expr ('or' and_expr)*
    and_expr := not_expr ('and' not_expr)*
    not_expr := 'not' not_expr | cmp
    cmp      := operand [('eq'|'ne'|'gt'|'ge'|'lt'|'le') operand | 'in' '(' literal (',' literal)* ')']
    operand  := '(' expr ')' | func '(' args ')' | path ['/' ('any'|'all') '(' var ':' expr ')'] | literal

Only the properties a resource declares filterable are accepted; anything else is an ``ODataError``.
"""

import datetime
import re


class ODataError(Exception):
    """Raised for any invalid OData query option (answered as 400 ODataError)."""


DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,7})?)?)?(Z|[+-]\d{2}:\d{2})$")
TOKEN_RE = re.compile(
    r"\s*(?:"
    r"(?P<string>'(?:[^']|'')*')"
    r"|(?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?)?(?:Z|[+-]\d{2}:\d{2}))"
    r"|(?P<number>-?\d+(?:\.\d+)?)"
    r"|(?P<punct>[(),:/])"
    r"|(?P<ident>[A-Za-z_$@][A-Za-z0-9_.$@]*)"
    r")"
)
COMPARISONS = ("eq", "ne", "gt", "ge", "lt", "le")
FUNCTIONS = ("startswith", "endswith", "contains", "tolower", "toupper")


def canonical_time(value):
    """Return a datetime/ISO string as the canonical ``YYYY-MM-DDTHH:MM:SS.fffffffZ`` UTC form (sortable as text)."""
    if isinstance(value, datetime.datetime):
        dt = value
    else:
        text = str(value).strip()
        if re.match(r"^\d{4}-\d{2}-\d{2}(Z|[+-]\d{2}:\d{2})?$", text):
            tz = text[10:] or "Z"
            text = text[:10] + "T00:00:00" + tz
        frac = re.search(r"\.(\d+)", text)
        extra = 0
        if frac and len(frac.group(1)) > 6:
            extra = int(frac.group(1)[6:7])
            text = text[:frac.start(1)] + frac.group(1)[:6] + text[frac.end(1):]
        try:
            dt = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError("invalid datetime %r" % value) from exc
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=datetime.timezone.utc)
        return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + str(extra) + "Z"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


class Literal:
    """A literal value with its OData kind (string, number, bool, null, datetime)."""

    def __init__(self, kind, value):
        self.kind = kind
        self.value = value


def tokenize(text):
    """Split a $filter expression into (kind, value) tokens."""
    tokens = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise ODataError("Syntax error at position %d in $filter: %r" % (pos, text[pos:pos + 20]))
        pos = match.end()
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "string":
            value = value[1:-1].replace("''", "'")
        tokens.append((kind, value))
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


class FieldSpec:
    """Filterable property of a resource: canonical name, key in the entity, type (str/num/bool/datetime/list)."""

    def __init__(self, name, key=None, ftype="str"):
        self.name = name
        self.key = key or name
        self.ftype = ftype


class Parser:
    """Recursive-descent parser turning a $filter string into a predicate ``f(entity) -> bool``."""

    def __init__(self, text, fields):
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.fields = {name.lower(): spec for name, spec in fields.items()}
        self.lambda_vars = {}

    def peek(self, offset=0):
        idx = self.pos + offset
        return self.tokens[idx] if idx < len(self.tokens) else (None, None)

    def next(self):
        tok = self.peek()
        if tok[0] is None:
            raise ODataError("Unexpected end of $filter expression: %r" % self.text)
        self.pos += 1
        return tok

    def expect_punct(self, char):
        kind, value = self.next()
        if kind != "punct" or value != char:
            raise ODataError("Expected '%s' but found %r in $filter" % (char, value))

    def is_word(self, word, offset=0):
        kind, value = self.peek(offset)
        return kind == "ident" and value.lower() == word

    def parse(self):
        if not self.tokens:
            raise ODataError("The $filter expression is empty")
        node = self.parse_or()
        if self.pos != len(self.tokens):
            raise ODataError("Syntax error in $filter: unexpected %r" % (self.peek()[1],))
        if not callable(node):
            raise ODataError("The $filter expression must be a boolean expression")
        return node

    def parse_or(self):
        left = self.parse_and()
        while self.is_word("or"):
            self.pos += 1
            right = self.parse_and()
            left = _or(self._boolean(left), self._boolean(right))
        return left

    def parse_and(self):
        left = self.parse_not()
        while self.is_word("and"):
            self.pos += 1
            right = self.parse_not()
            left = _and(self._boolean(left), self._boolean(right))
        return left

    def parse_not(self):
        if self.is_word("not"):
            self.pos += 1
            inner = self._boolean(self.parse_not())
            return lambda ent, env: not inner(ent, env)
        return self.parse_cmp()

    @staticmethod
    def _boolean(node):
        if not callable(node):
            raise ODataError("Expected a boolean expression in $filter")
        return node

    def parse_cmp(self):
        left = self.parse_operand()
        kind, value = self.peek()
        if kind == "ident" and value.lower() in COMPARISONS:
            self.pos += 1
            right = self.parse_operand()
            return make_comparison(value.lower(), left, right)
        if kind == "ident" and value.lower() == "in":
            self.pos += 1
            self.expect_punct("(")
            items = [self.parse_literal()]
            while self.peek() == ("punct", ","):
                self.pos += 1
                items.append(self.parse_literal())
            self.expect_punct(")")
            return make_in(left, items)
        return left

    def parse_literal(self):
        node = self.parse_operand()
        if not isinstance(node, Literal):
            raise ODataError("Expected a literal value in $filter 'in' list")
        return node

    def parse_operand(self):
        kind, value = self.next()
        if kind == "punct" and value == "(":
            node = self.parse_or()
            self.expect_punct(")")
            return node
        if kind == "string":
            return Literal("string", value)
        if kind == "number":
            return Literal("number", float(value) if "." in value else int(value))
        if kind == "datetime":
            return Literal("datetime", canonical_time(value))
        if kind == "ident":
            low = value.lower()
            if low in ("true", "false"):
                return Literal("bool", low == "true")
            if low == "null":
                return Literal("null", None)
            if low in FUNCTIONS and self.peek() == ("punct", "("):
                return self.parse_function(low)
            return self.parse_path(value)
        raise ODataError("Syntax error in $filter near %r" % (value,))

    def parse_function(self, name):
        self.expect_punct("(")
        args = [self.parse_operand()]
        while self.peek() == ("punct", ","):
            self.pos += 1
            args.append(self.parse_operand())
        self.expect_punct(")")
        if name in ("tolower", "toupper"):
            if len(args) != 1 or isinstance(args[0], Literal):
                raise ODataError("%s() takes one property argument" % name)
            inner = args[0]
            conv = str.lower if name == "tolower" else str.upper
            return Accessor(lambda ent, env: _apply_str(conv, inner.get(ent, env)), inner.spec)
        if len(args) != 2 or not isinstance(args[0], Accessor) or not isinstance(args[1], Literal) or args[1].kind != "string":
            raise ODataError("%s() expects (property, 'string')" % name)
        acc, needle = args[0], args[1].value

        def check(ent, env):
            val = acc.get(ent, env)
            if not isinstance(val, str):
                return False
            if name == "startswith":
                return val.startswith(needle)
            if name == "endswith":
                return val.endswith(needle)
            return needle in val
        return check

    def parse_path(self, name):
        if name in self.lambda_vars:
            spec = self.lambda_vars[name]
            return Accessor(lambda ent, env, var=name: env.get(var), spec)
        spec = self.fields.get(name.lower())
        if spec is None:
            allowed = ", ".join(sorted(f.name for f in self.fields.values()))
            raise ODataError("Invalid filter: property '%s' is not supported for filtering on this resource. Supported properties: %s" % (name, allowed))
        if self.peek() == ("punct", "/"):
            self.pos += 1
            kind, op = self.next()
            if kind != "ident" or op.lower() not in ("any", "all"):
                raise ODataError("Only the any() and all() lambda operators are supported after '/' in $filter")
            if spec.ftype != "list":
                raise ODataError("Property '%s' is not a collection; any()/all() cannot be used" % spec.name)
            self.expect_punct("(")
            kind, var = self.next()
            if kind != "ident":
                raise ODataError("Expected a lambda variable in %s/%s()" % (spec.name, op))
            self.expect_punct(":")
            self.lambda_vars[var] = FieldSpec(var, ftype="str")
            body = self._boolean(self.parse_or())
            del self.lambda_vars[var]
            self.expect_punct(")")
            key = spec.key
            if op.lower() == "any":
                return lambda ent, env: any(body(ent, dict(env, **{var: item})) for item in (ent.get(key) or ()))
            return lambda ent, env: all(body(ent, dict(env, **{var: item})) for item in (ent.get(key) or ()))
        if spec.ftype == "list":
            raise ODataError("Collection property '%s' can only be filtered with any()/all(), e.g. %s/any(t: t eq 'x')" % (spec.name, spec.name))
        return Accessor(lambda ent, env, key=spec.key: ent.get(key), spec)


def _apply_str(conv, val):
    return conv(val) if isinstance(val, str) else val


def _or(left, right):
    return lambda ent, env: left(ent, env) or right(ent, env)


def _and(left, right):
    return lambda ent, env: left(ent, env) and right(ent, env)


class Accessor:
    """A property reference (or a function of one) inside a filter expression."""

    def __init__(self, getter, spec):
        self.get = getter
        self.spec = spec


def coerce_literal(lit, spec):
    """Convert a literal to the comparable representation of the property type."""
    if lit.kind == "null":
        return None
    if spec.ftype == "datetime":
        if lit.kind in ("datetime", "string"):
            try:
                return canonical_time(lit.value)
            except ValueError as exc:
                raise ODataError("Invalid datetime literal %r for property '%s'" % (lit.value, spec.name)) from exc
        raise ODataError("Property '%s' is a DateTimeOffset; compare it with a datetime such as 2019-11-22T00:00:00Z" % spec.name)
    if spec.ftype == "num":
        if lit.kind == "number":
            return lit.value
        if lit.kind == "string":
            try:
                return int(lit.value)
            except ValueError as exc:
                raise ODataError("Property '%s' is numeric; %r is not a number" % (spec.name, lit.value)) from exc
        raise ODataError("Property '%s' is numeric" % spec.name)
    if spec.ftype == "bool":
        if lit.kind == "bool":
            return lit.value
        raise ODataError("Property '%s' is boolean; use true or false" % spec.name)
    if lit.kind in ("string", "datetime"):
        return lit.value
    if lit.kind == "number":
        return str(lit.value)
    raise ODataError("Property '%s' is a string; quote the value in single quotes" % spec.name)


def _ordered(op, left, right):
    if left is None or right is None:
        return False
    try:
        if op == "gt":
            return left > right
        if op == "ge":
            return left >= right
        if op == "lt":
            return left < right
        return left <= right
    except TypeError:
        return False


def make_comparison(op, left, right):
    """Build a predicate for ``left op right`` where one side is a property and the other a literal."""
    if isinstance(left, Literal) and isinstance(right, Accessor):
        flip = {"gt": "lt", "lt": "gt", "ge": "le", "le": "ge"}
        return make_comparison(flip.get(op, op), right, left)
    if not isinstance(left, Accessor) or not isinstance(right, Literal):
        raise ODataError("Comparisons must be between a property and a literal value")
    value = coerce_literal(right, left.spec)
    get = left.get  # stored datetimes are canonical text, so they compare as strings
    if op == "eq":
        return lambda ent, env: get(ent, env) == value
    if op == "ne":
        return lambda ent, env: get(ent, env) != value
    if value is None:
        raise ODataError("null can only be compared with eq or ne")
    return lambda ent, env: _ordered(op, get(ent, env), value)


def make_in(left, items):
    if not isinstance(left, Accessor):
        raise ODataError("The left side of 'in' must be a property")
    values = {coerce_literal(item, left.spec) for item in items}
    get = left.get
    return lambda ent, env: get(ent, env) in values


def compile_filter(text, fields):
    """Compile ``$filter`` text into ``predicate(entity) -> bool`` (None if text is empty)."""
    if text is None or not text.strip():
        return None
    node = Parser(text, fields).parse()
    return lambda ent: bool(node(ent, {}))


def parse_paging(query, max_top=10000):
    """Return (top or None, skip) from the query dict; raise ODataError on bad values."""
    top = query.get("$top")
    skip = query.get("$skip")
    try:
        top = int(top) if top is not None else None
        skip = int(skip) if skip is not None else 0
    except ValueError as exc:
        raise ODataError("$top and $skip must be non-negative integers") from exc
    if top is not None and top < 0 or skip < 0:
        raise ODataError("$top and $skip must be non-negative integers")
    if top is not None and top > max_top:
        raise ODataError("The limit of '%d' for Top query has been exceeded. The value from the incoming request is '%d'." % (max_top, top))
    return top, skip
