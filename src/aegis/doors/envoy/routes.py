"""Compiled mapping routes: tool-name templates and path matchers.

Path templates use Envoy's own ``uri_template`` syntax
(``envoy.extensions.path.match.uri_template.v3``), so the same pattern reads the
same in the Envoy route and in the Aegis mapping: ``*`` is one segment, ``**``
the rest of the path (last only), ``{x}`` / ``{x=*}`` a named segment and
``{x=**}`` the named rest. Templates and regexes compile to RE2 (linear time).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aegis.core.regex import Regex, compile_re2
from aegis.errors import PatternError
from aegis.policy.values import glob_matcher

if TYPE_CHECKING:
    from aegis.doors.envoy.config import RouteRule

#: Placeholders every tool template may use (the route's variables come on top).
BUILTIN_PLACEHOLDERS: Final = frozenset({"method", "scheme", "host", "port", "authority", "path"})
_HOST_PATTERN: Final = frozenset(string.ascii_lowercase + string.digits + "-._~%!$&'()+,;=*?[]:")


class MappingConfigError(ValueError):
    """The mapping configuration cannot be used (raised at load time, never per request)."""


@dataclass(frozen=True, slots=True)
class ToolTemplate:
    """Literal text and ``{name}`` placeholders, nothing else.

    Parsed with str.format's grammar but rendered by hand: attribute and index
    access, conversions and format specs are refused at load time, so a template
    can never reach into an object.
    """

    parts: tuple[tuple[str, str | None], ...]

    @classmethod
    def parse(cls, text: str, allowed: frozenset[str], where: str) -> ToolTemplate:
        if not text.strip():
            raise MappingConfigError(f"{where}: the tool template is empty")
        try:
            pieces = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise MappingConfigError(f"{where}: {exc}") from None
        parts: list[tuple[str, str | None]] = []
        for literal, name, spec, conversion in pieces:
            if name is not None and (spec or conversion):
                raise MappingConfigError(f"{where}: {{{name}}} takes no format or conversion")
            if name is not None and name not in allowed:
                known = ", ".join(sorted(allowed))
                raise MappingConfigError(f"{where}: unknown placeholder {{{name}}}; known: {known}")
            parts.append((literal, name))
        return cls(tuple(parts))

    def render(self, values: Mapping[str, str]) -> str:
        return "".join(literal + (values[name] if name else "") for literal, name in self.parts)


def compile_uri_template(template: str, where: str) -> tuple[Regex, frozenset[str]]:
    """An Envoy uri_template as an RE2 whole-path matcher, and its variable names."""
    if not template.startswith("/"):
        raise MappingConfigError(f"{where}: a path template starts with '/'")
    segments = template[1:].split("/")
    pattern: list[str] = []
    names: set[str] = set()
    for i, segment in enumerate(segments):
        name: str | None = None
        if segment in {"*", "**"}:
            operator = segment
        elif segment.startswith("{") and segment.endswith("}"):
            name, _, operator = segment[1:-1].partition("=")
            operator = operator or "*"
            if not (name.isascii() and name.isidentifier()) or name in names:
                raise MappingConfigError(f"{where}: bad or repeated variable {segment!r}")
            if operator not in {"*", "**"}:
                raise MappingConfigError(f"{where}: {segment!r}: only '*' or '**' may follow '='")
            names.add(name)
        else:
            if set(segment) & {"{", "}", "*"}:
                raise MappingConfigError(
                    f"{where}: {segment!r}: a variable or wildcard must be a whole segment"
                )
            pattern.append("/" + "".join(ch if ch.isalnum() else "\\" + ch for ch in segment))
            continue
        if operator == "**" and i != len(segments) - 1:
            raise MappingConfigError(f"{where}: '**' may only be the last segment")
        body = ".*" if operator == "**" else "[^/]+"
        pattern.append("/" + (f"(?P<{name}>{body})" if name else body))
    try:
        return compile_re2("".join(pattern)), frozenset(names)
    except PatternError as exc:
        raise MappingConfigError(f"{where}: {exc.message}") from None


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    rule: RouteRule
    hosts: tuple[Callable[[str], bool], ...]
    regex: Regex | None
    tool: ToolTemplate | None
    literal: str | None = None  # a template with no variable or wildcard: compare, no regex

    def match(self, method: str, host: str, path: str) -> dict[str, str] | None:
        """The route's variables when it matches, else None."""
        rule = self.rule
        if rule.methods and method not in rule.methods:
            return None
        if self.hosts and not any(test(host) for test in self.hosts):
            return None
        if rule.path_prefix is not None and not path.startswith(rule.path_prefix):
            return None
        if self.literal is not None:
            return {} if path == self.literal else None
        if self.regex is None:
            return {}
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return {str(k): str(v) for k, v in found.groupdict().items() if v is not None}


def compile_route(rule: RouteRule, index: int) -> CompiledRoute:
    where = f"routes[{index}]" + (f" ({rule.name})" if rule.name else "")
    regex, variables = None, frozenset[str]()
    if rule.path is not None:
        regex, variables = compile_uri_template(rule.path, where)
    elif rule.path_regex is not None:
        try:
            regex = compile_re2(rule.path_regex)
        except PatternError as exc:
            raise MappingConfigError(f"{where}: {exc.message}") from None
        variables = frozenset(str(name) for name in regex.groupindex)
    if rule.path_prefix is not None and not rule.path_prefix.startswith("/"):
        raise MappingConfigError(f"{where}: path_prefix must start with '/'")
    clash = variables & BUILTIN_PLACEHOLDERS
    if clash:
        raise MappingConfigError(f"{where}: variable(s) {sorted(clash)} shadow built-in names")
    hosts = []
    for pattern in rule.hosts:
        lowered = pattern.lower().rstrip(".")
        if not lowered or not set(lowered) <= _HOST_PATTERN:
            raise MappingConfigError(f"{where}: {pattern!r} is not a host pattern")
        hosts.append(glob_matcher(lowered))
    tool = None
    if rule.tool is not None:
        tool = ToolTemplate.parse(rule.tool, BUILTIN_PLACEHOLDERS | variables, f"{where} tool")
    literal = None
    if rule.path is not None and not set(rule.path) & {"*", "{"}:
        literal = rule.path
    return CompiledRoute(rule, tuple(hosts), regex, tool, literal)
