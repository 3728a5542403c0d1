"""The policy compiler, as an ordered list of named stages (after OPA's compiler).

    parse     text -> data with source positions        (policy.source)
    validate  data -> typed documents                   (policy.model, pydantic)
    resolve   documents -> rules with compiled parts    (policy.conditions, aegis.dlp, aegis.net)
    check     warnings: rules that never fire, unreachable rules, always-allow, unknown names
    index     rules -> CompiledPolicy with its per-tenant, per-tool index

Each stage reports *every* problem it finds, located by file, line and column
with a stable code; a stage runs only if the ones before it found no error,
because it relies on what they established.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from aegis.core.call import McpPhase, ToolKind
from aegis.core.decision import ApprovalRequirement, FailMode, Mode, Outcome
from aegis.core.paths import PathSyntaxError, parse_path
from aegis.dlp import Detector, Redactor, builtin_detectors
from aegis.dlp.detector import DetectorNameError
from aegis.errors import (
    Diagnostic,
    ErrorCode,
    PatternError,
    PolicyLoadError,
    Severity,
)
from aegis.net import PublicSuffixList, load_public_suffix_list
from aegis.policy import model as m
from aegis.policy.check import run_checks
from aegis.policy.compiled import (
    CompiledPolicy,
    CompiledRule,
    Declarations,
    Defaults,
    SourceRef,
    ToolInfo,
    rule_test,
)
from aegis.policy.conditions import Resolver
from aegis.policy.source import KEY, LocPath, SourceDocument, parse_source, read_source
from aegis.policy.values import glob_matcher, is_glob, parse_duration

MAX_RULES: Final = 100_000
POLICY_SUFFIXES: Final = (".yaml", ".yml", ".json")
TEST_SUFFIXES: Final = (".test.yaml", ".test.yml", ".test.json")

#: Loc paths in the resolve and check stages start with the document's index.
DocLoc = tuple[Any, ...]


@dataclass
class CompileContext:
    """What the stages share: the sources, and every diagnostic so far."""

    sources: list[SourceDocument]
    psl: PublicSuffixList
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)

    def locate(self, loc: DocLoc) -> tuple[str, int, int]:
        doc = self.sources[loc[0]]
        line, col = doc.locate(tuple(loc[1:]))
        return doc.file, line, col

    def report(
        self,
        code: ErrorCode,
        message: str,
        loc: DocLoc,
        severity: Severity = Severity.ERROR,
        rule_id: str | None = None,
    ) -> None:
        file, line, col = self.locate(loc)
        self.diagnostics.append(Diagnostic(code, message, severity, file, line, col, rule_id))


# -- file discovery -----------------------------------------------------------------


def is_policy_file(path: Path) -> bool:
    name = path.name
    return name.endswith(POLICY_SUFFIXES) and not name.endswith(TEST_SUFFIXES)


def policy_files(paths: Iterable[Path]) -> list[Path]:
    """Policy files under the given files/directories (``*.test.yaml`` are test suites)."""
    return [file for file, _ in named_policy_files(paths)]


def named_policy_files(paths: Iterable[Path]) -> list[tuple[Path, str]]:
    """Policy files with their names in the set: relative to the folder given, or the
    file's own name when a file is given directly."""
    found: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_policy_file(p))
            found.extend((p, p.relative_to(path).as_posix()) for p in files)
        else:
            found.append((path, path.name))
    return found


def load_policy(
    paths: Sequence[Path], *, version: str | None = None, psl: PublicSuffixList | None = None
) -> CompiledPolicy:
    """Read and compile policy files or directories; raise PolicyLoadError on any error."""
    files = named_policy_files(paths)
    if not files:
        where = ", ".join(str(p) for p in paths)
        raise PolicyLoadError(
            (Diagnostic(ErrorCode.POLICY_NO_FILES, f"no policy files found in {where}"),)
        )
    names = [name for _, name in files]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise PolicyLoadError(
            (Diagnostic(ErrorCode.POLICY_DUPLICATE_ID, f"two policy files are both named {dup!r}"),)
        )
    return compile_sources([read_source(p, name) for p, name in files], version=version, psl=psl)


def compile_text(text: str, file: str = "<input>", *, version: str | None = None) -> CompiledPolicy:
    """Compile one policy given as text (YAML, or JSON if ``file`` ends in .json)."""
    return compile_sources([parse_source(text, file)], version=version)


# -- the pipeline ---------------------------------------------------------------------


def compile_sources(
    parsed: Sequence[SourceDocument | Diagnostic],
    *,
    version: str | None = None,
    psl: PublicSuffixList | None = None,
) -> CompiledPolicy:
    # Stage 1, parse: already done per file by the caller; collect its errors.
    parse_errors = [p for p in parsed if isinstance(p, Diagnostic)]
    sources = [p for p in parsed if isinstance(p, SourceDocument)]
    ctx = CompileContext(sources, psl or load_public_suffix_list(), list(parse_errors))
    docs = stage_validate(ctx)
    if not ctx.failed:
        resolved = stage_resolve(ctx, docs)
        if not ctx.failed:
            stage_check(ctx, docs, resolved)
            return stage_index(ctx, docs, resolved, version)
    raise PolicyLoadError(tuple(sorted(ctx.diagnostics, key=_diagnostic_order)))


def _diagnostic_order(d: Diagnostic) -> tuple[str, int, int]:
    return (d.file, d.line, d.column)


# -- stage 2: validate ----------------------------------------------------------------

_TYPE_ERRORS = ("_type", "_parsing")


def _code_for(error: Any) -> ErrorCode:
    kind: str = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        return ErrorCode.POLICY_UNKNOWN_FIELD
    if kind == "missing":
        return ErrorCode.POLICY_MISSING_FIELD
    if loc[:1] in (("apiVersion",), ("kind",)) and kind == "literal_error":
        return ErrorCode.POLICY_UNSUPPORTED_VERSION
    if kind == "invalid_condition":
        return ErrorCode.POLICY_INVALID_OPERATOR
    if kind.endswith(_TYPE_ERRORS) or kind in ("model_type", "dict_type", "list_type"):
        return ErrorCode.POLICY_INVALID_TYPE
    return ErrorCode.POLICY_INVALID_VALUE


def stage_validate(ctx: CompileContext) -> list[m.PolicyDocument]:
    docs: list[m.PolicyDocument] = []
    for index, source in enumerate(ctx.sources):
        if not isinstance(source.data, dict):
            ctx.report(ErrorCode.POLICY_INVALID_TYPE, "a policy file holds one mapping", (index,))
            continue
        try:
            docs.append(m.PolicyDocument.model_validate(source.data))
        except ValidationError as exc:
            seen: set[tuple[int, int, ErrorCode]] = set()
            for error in exc.errors(include_url=False):
                loc: LocPath = tuple(error["loc"])
                code = _code_for(error)
                # Point an unknown key at the key itself, everything else at its value.
                clean = _source_path(source, loc)
                pos_loc = (*clean, KEY) if code is ErrorCode.POLICY_UNKNOWN_FIELD else clean
                line, col = source.locate(pos_loc)
                if (line, col, code) in seen:
                    continue  # one union, several arms failing at the same spot
                seen.add((line, col, code))
                where = ".".join(str(p) for p in clean)
                msg = error["msg"]
                if code is ErrorCode.POLICY_UNKNOWN_FIELD:
                    msg = f"unknown field {loc[-1]!r}"
                ctx.diagnostics.append(
                    Diagnostic(
                        code,
                        f"{where}: {msg}" if where else msg,
                        file=source.file,
                        line=line,
                        column=col,
                    )
                )
    return docs


#: Segments pydantic adds to error locations for union arms; not in the file.
_UNION_TAGS: Final = frozenset(
    {"int", "float", "str", "bool", "list", "dict", "none", "function-after"}
    | {"param", "destination", "time", "chain", "cost", "any", "all", "not"}
)


def _source_path(source: SourceDocument, loc: LocPath) -> LocPath:
    """The model path without union tags, as the author would write it."""
    out: list[str | int] = []
    node: Any = source.data
    for i, seg in enumerate(loc):
        nxt = loc[i + 1] if i + 1 < len(loc) else None
        if isinstance(seg, str) and seg in _UNION_TAGS:
            # A tag unless the file really has this key and the path goes on inside it.
            is_key = isinstance(node, dict) and seg in node and nxt != seg
            if not is_key or (isinstance(node, dict) and nxt in node):
                continue
        if isinstance(node, dict):
            node = node.get(seg)
        elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
            node = node[seg]
        else:
            node = None
        out.append(seg)
    return tuple(out)


# -- stage 3: resolve -----------------------------------------------------------------


@dataclass
class Resolved:
    rules: list[CompiledRule]
    defaults: Defaults
    declarations: Declarations
    tool_exact: dict[str, ToolInfo]
    tool_globs: list[tuple[Callable[[str], bool], ToolInfo]]
    spawn_graph: dict[str, frozenset[str]]
    rule_docs: list[int]


_EFFECTS = {
    "allow": Outcome.ALLOW,
    "deny": Outcome.DENY,
    "sanitize": Outcome.SANITIZE,
    "approval_needed": Outcome.APPROVAL_NEEDED,
}
_DEFAULT_REASONS = {
    Outcome.ALLOW: "allowed by rule {id}",
    Outcome.DENY: "denied by rule {id}",
    Outcome.SANITIZE: "sanitized by rule {id}",
    Outcome.APPROVAL_NEEDED: "approval required by rule {id}",
}


def stage_resolve(ctx: CompileContext, docs: list[m.PolicyDocument]) -> Resolved:
    spawn_graph: dict[str, frozenset[str]] = {}
    for d, doc in enumerate(docs):
        for a, agent in enumerate(doc.agents):
            if agent.id in spawn_graph:
                ctx.report(
                    ErrorCode.POLICY_DUPLICATE_ID,
                    f"agent {agent.id!r} is declared twice",
                    (d, "agents", a, "id"),
                )
            spawn_graph[agent.id] = frozenset(agent.may_spawn)
    resolver = Resolver(ctx.psl, spawn_graph, tool_cost=lambda _tool: None)
    defaults = _resolve_defaults(ctx, docs)
    ids: dict[str, DocLoc] = {}

    def claim(id_: str, loc: DocLoc, what: str) -> None:
        if id_ in ids:
            file, line, _ = ctx.locate(ids[id_])
            ctx.report(
                ErrorCode.POLICY_DUPLICATE_ID,
                f"{what} id {id_!r} is already used at {file}:{line}",
                (*loc, "id"),
            )
        else:
            ids[id_] = (*loc, "id")

    tool_exact: dict[str, ToolInfo] = {}
    tool_globs: list[tuple[Callable[[str], bool], ToolInfo]] = []
    rules: list[CompiledRule] = []
    rule_docs: list[int] = []
    total = sum(len(doc.rules) for doc in docs)
    if total > MAX_RULES:
        ctx.report(
            ErrorCode.POLICY_TOO_MANY_RULES, f"{total} rules; the limit is {MAX_RULES}", (0,)
        )
        return Resolved([], defaults, Declarations(), {}, [], spawn_graph, [])
    # Tools first, from every document: any rule may name a tool declared elsewhere.
    for d, doc in enumerate(docs):
        _resolve_tools(ctx, doc, d, tool_exact, tool_globs)
    resolver.tool_cost = lambda tool: _declared_cost(tool, tool_exact, tool_globs)

    for d, doc in enumerate(docs):
        decls: list[tuple[str, str, Sequence[m.LimitDecl | m.BudgetDecl | m.ApprovalCapDecl]]]
        decls = [
            ("limit", "limits", doc.limits),
            ("budget", "budgets", doc.budgets),
            ("approval cap", "approval_caps", doc.approval_caps),
        ]
        for kind_name, key, items in decls:
            for i, decl in enumerate(items):
                loc = (d, key, i)
                claim(decl.id, loc, kind_name)
                _resolve_declaration(ctx, decl, loc, doc)
        for r, rule in enumerate(doc.rules):
            loc = (d, "rules", r)
            claim(rule.id, loc, "rule")
            compiled = _resolve_rule(ctx, resolver, doc, rule, loc=loc, order=len(rules))
            if compiled is not None:
                rules.append(compiled)
                rule_docs.append(d)

    for code, message, rloc, severity in resolver.diagnostics:
        ctx.report(code, message, rloc, severity)
    declarations = Declarations(
        limits=tuple(x for doc in docs for x in doc.limits),
        budgets=tuple(x for doc in docs for x in doc.budgets),
        approval_caps=tuple(x for doc in docs for x in doc.approval_caps),
        agents=tuple(x for doc in docs for x in doc.agents),
        tools=tuple(x for doc in docs for x in doc.tools),
    )
    return Resolved(rules, defaults, declarations, tool_exact, tool_globs, spawn_graph, rule_docs)


def _resolve_tools(
    ctx: CompileContext,
    doc: m.PolicyDocument,
    d: int,
    tool_exact: dict[str, ToolInfo],
    tool_globs: list[tuple[Callable[[str], bool], ToolInfo]],
) -> None:
    for t, tool in enumerate(doc.tools):
        info = ToolInfo(ToolKind(tool.kind), float(tool.cost) if tool.cost is not None else None)
        if is_glob(tool.name):
            matcher = _glob(ctx, tool.name, (d, "tools", t, "name"))
            if matcher is not None:
                tool_globs.append((matcher, info))
        elif tool.name in tool_exact and tool_exact[tool.name] != info:
            ctx.report(
                ErrorCode.POLICY_DUPLICATE_ID,
                f"tool {tool.name!r} is declared twice with different kind or cost",
                (d, "tools", t, "name"),
            )
        else:
            tool_exact[tool.name] = info


def _declared_cost(
    tool: str,
    tool_exact: dict[str, ToolInfo],
    tool_globs: list[tuple[Callable[[str], bool], ToolInfo]],
) -> float | None:
    """The declared cost of a tool: its exact declaration, else the first matching glob."""
    info = tool_exact.get(tool)
    if info is None:
        info = next((i for match, i in tool_globs if match(tool)), None)
    return info.cost if info is not None else None


def _glob(ctx: CompileContext, pattern: str, loc: DocLoc) -> Callable[[str], bool] | None:
    try:
        return glob_matcher(pattern)
    except (ValueError, PatternError) as exc:
        ctx.report(ErrorCode.POLICY_INVALID_GLOB, f"{pattern!r}: {exc}", loc)
        return None


def _duration(ctx: CompileContext, value: int | str, loc: DocLoc) -> float | None:
    try:
        return parse_duration(value)
    except ValueError as exc:
        ctx.report(ErrorCode.POLICY_INVALID_DURATION, str(exc), loc)
        return None


def _approval(
    ctx: CompileContext, approval: m.Approval, loc: DocLoc, rule_id: str
) -> ApprovalRequirement | None:
    ttl = _duration(ctx, approval.ttl, (*loc, "ttl"))
    if ttl is None:
        return None
    return ApprovalRequirement(approval.group, approval.channel, max(1, int(ttl)), rule_id)


def _resolve_defaults(ctx: CompileContext, docs: list[m.PolicyDocument]) -> Defaults:
    chosen: m.Defaults | None = None
    chosen_at = -1
    for d, doc in enumerate(docs):
        if doc.defaults is None:
            continue
        if chosen is not None and doc.defaults != chosen:
            file, line, _ = ctx.locate((chosen_at, "defaults"))
            ctx.report(
                ErrorCode.POLICY_INVALID_VALUE,
                f"defaults differ from those set at {file}:{line}; set them in one file",
                (d, "defaults"),
            )
            continue
        chosen, chosen_at = doc.defaults, d
    spec = chosen or m.Defaults()
    loc: DocLoc = (max(chosen_at, 0), "defaults")
    if spec.fail_mode.write == "open":
        ctx.report(
            ErrorCode.POLICY_WRITE_FAIL_OPEN,
            "a write tool never fails open (DESIGN.md §3); use 'closed'",
            (*loc, "fail_mode", "write"),
        )
    outcome = _EFFECTS[spec.outcome]
    approval = None
    if outcome is Outcome.APPROVAL_NEEDED:
        if spec.approval is None:
            ctx.report(
                ErrorCode.POLICY_MISSING_OBLIGATION,
                "defaults.outcome approval_needed needs defaults.approval (group, ttl)",
                (*loc, "outcome"),
            )
        else:
            approval = _approval(ctx, spec.approval, (*loc, "approval"), "defaults")
    elif spec.approval is not None:
        ctx.report(
            ErrorCode.POLICY_UNEXPECTED_OBLIGATION,
            "defaults.approval only applies when defaults.outcome is approval_needed",
            (*loc, "approval"),
        )
    reason = (
        spec.reason
        or {
            Outcome.DENY: "no rule allows this call (default deny)",
            Outcome.ALLOW: "no rule matched (default allow)",
            Outcome.APPROVAL_NEEDED: "no rule matched (default: approval required)",
        }[outcome]
    )
    return Defaults(
        outcome=outcome,
        reason=reason,
        approval=approval,
        fail_read=FailMode(spec.fail_mode.read),
        fail_write=FailMode.CLOSED,
    )


def _resolve_scope_tenants(
    ctx: CompileContext, doc: m.PolicyDocument, scope: m.Scope, loc: DocLoc
) -> frozenset[str] | None:
    tenant = doc.metadata.tenant
    if scope.tenants is None:
        return frozenset({tenant}) if tenant else None
    if tenant is not None and any(t != tenant for t in scope.tenants):
        ctx.report(
            ErrorCode.POLICY_INVALID_VALUE,
            f"scope names tenants outside this policy's tenant {tenant!r}",
            (*loc, "tenants"),
        )
    return frozenset(scope.tenants)


def _resolve_agents(
    ctx: CompileContext, agents: list[str] | None, loc: DocLoc
) -> Callable[[str], bool] | None:
    if agents is None:
        return None
    exact = frozenset(a for a in agents if not is_glob(a))
    globs = [g for g in (_glob(ctx, a, (*loc, i)) for i, a in enumerate(agents) if is_glob(a)) if g]
    if not globs:
        return exact.__contains__
    return lambda agent: agent in exact or any(g(agent) for g in globs)


def _resolve_declaration(
    ctx: CompileContext,
    decl: m.LimitDecl | m.BudgetDecl | m.ApprovalCapDecl,
    loc: DocLoc,
    doc: m.PolicyDocument,
) -> None:
    _resolve_scope_tenants(ctx, doc, decl.scope, (*loc, "scope"))
    for i, tool in enumerate(decl.scope.tools):
        _glob(ctx, tool, (*loc, "scope", "tools", i))
    _resolve_agents(ctx, decl.scope.agents, (*loc, "scope", "agents"))
    if isinstance(decl, m.BudgetDecl):
        _duration(ctx, decl.period, (*loc, "period"))
        return
    if decl.rate is not None:
        _duration(ctx, decl.rate.per, (*loc, "rate", "per"))
    if isinstance(decl, m.LimitDecl) and decl.rate is None and decl.concurrency is None:
        ctx.report(
            ErrorCode.POLICY_MISSING_FIELD, "a limit needs 'rate', 'concurrency' or both", loc
        )
    if isinstance(decl, m.ApprovalCapDecl) and decl.rate is None and decl.max_pending is None:
        ctx.report(
            ErrorCode.POLICY_MISSING_FIELD,
            "an approval cap needs 'rate', 'max_pending' or both",
            loc,
        )


def _resolve_redactor(ctx: CompileContext, spec: m.Sanitize, loc: DocLoc) -> Redactor | None:
    ok = True
    fields = []
    for i, text in enumerate(spec.fields):
        try:
            fields.append(parse_path(text))
        except PathSyntaxError as exc:
            ctx.report(ErrorCode.POLICY_INVALID_PATH, f"{text!r}: {exc}", (*loc, "fields", i))
            ok = False
    builtins = builtin_detectors()
    detectors: list[Detector] = []
    for i, name in enumerate(spec.detectors):
        found = builtins.get(name)
        if found is None:
            known = ", ".join(sorted(builtins))
            ctx.report(
                ErrorCode.POLICY_UNKNOWN_DETECTOR,
                f"unknown detector {name!r} (known: {known})",
                (*loc, "detectors", i),
            )
            ok = False
        else:
            detectors.append(found)
    for i, pattern in enumerate(spec.patterns):
        try:
            detectors.append(Detector.custom(pattern.name, pattern.regex))
        except DetectorNameError as exc:  # e.g. a custom pattern named like a built-in
            ctx.report(exc.code, exc.message, (*loc, "patterns", i, "name"))
            ok = False
        except PatternError as exc:
            ctx.report(exc.code, exc.message, (*loc, "patterns", i, "regex"))
            ok = False
    scan = None
    if spec.scan is not None:
        scan = []
        for i, text in enumerate(spec.scan):
            try:
                scan.append(parse_path(text))
            except PathSyntaxError as exc:
                ctx.report(ErrorCode.POLICY_INVALID_PATH, f"{text!r}: {exc}", (*loc, "scan", i))
                ok = False
    if not fields and not detectors and ok:
        ctx.report(
            ErrorCode.POLICY_MISSING_OBLIGATION,
            "sanitize needs at least one of fields, detectors, patterns",
            loc,
        )
        return None
    return Redactor(fields, detectors, scan) if ok else None


def _obligation(ctx: CompileContext, rule: m.Rule, loc: DocLoc, key: str, effect: Outcome) -> bool:
    """Check that the obligation block ``key`` is present exactly when the rule's
    effect needs it; True when it is there to be resolved."""
    present = getattr(rule, key) is not None
    if _EFFECTS[rule.effect] is effect:
        if not present:
            ctx.report(
                ErrorCode.POLICY_MISSING_OBLIGATION,
                f"rule {rule.id!r} has effect {rule.effect} but no {key!r} block",
                (*loc, "effect"),
            )
        return present
    if present:
        ctx.report(
            ErrorCode.POLICY_UNEXPECTED_OBLIGATION,
            f"{key!r} only applies to effect {effect}, not {rule.effect}",
            (*loc, key),
        )
    return False


def _resolve_rule(
    ctx: CompileContext,
    resolver: Resolver,
    doc: m.PolicyDocument,
    rule: m.Rule,
    *,
    loc: DocLoc,
    order: int,
) -> CompiledRule | None:
    effect = _EFFECTS[rule.effect]
    scope = rule.match
    tenants = _resolve_scope_tenants(ctx, doc, scope, (*loc, "match"))
    tool_matchers = [_glob(ctx, t, (*loc, "match", "tools", i)) for i, t in enumerate(scope.tools)]
    matchers = [t for t in tool_matchers if t is not None]
    agent_match = _resolve_agents(ctx, scope.agents, (*loc, "match", "agents"))
    when = resolver.conditions(rule.when, (*loc, "when")) if rule.when else None

    redactor = None
    if _obligation(ctx, rule, loc, "sanitize", Outcome.SANITIZE) and rule.sanitize:
        redactor = _resolve_redactor(ctx, rule.sanitize, (*loc, "sanitize"))
    approval = None
    if _obligation(ctx, rule, loc, "approval", Outcome.APPROVAL_NEEDED) and rule.approval:
        approval = _approval(ctx, rule.approval, (*loc, "approval"), rule.id)

    if len(matchers) == 1:
        tool_match = matchers[0]
    else:
        frozen = tuple(matchers)
        tool_match = lambda name: any(t(name) for t in frozen)  # noqa: E731
    file, line, col = ctx.locate(loc)
    return CompiledRule(
        id=rule.id,
        order=order,
        effect=effect,
        mode=Mode(rule.mode),
        reason=rule.reason or _DEFAULT_REASONS[effect].format(id=rule.id),
        tenants=tenants,
        agent_match=agent_match,
        labels=frozenset(scope.labels) if scope.labels is not None else None,
        tool_match=tool_match,
        tool_patterns=tuple(scope.tools),
        kind=ToolKind(scope.kind) if scope.kind else None,
        phase=McpPhase(scope.phase) if scope.phase else None,
        when=when,
        redactor=redactor,
        approval=approval,
        source=SourceRef(file, line, col),
        model=rule,
        ids=(rule.id,),
        test=rule_test(
            agent_match, frozenset(scope.labels) if scope.labels is not None else None, when
        ),
    )


# -- stage 4: check -------------------------------------------------------------------


def stage_check(ctx: CompileContext, docs: list[m.PolicyDocument], resolved: Resolved) -> None:
    for code, message, loc, rule_id in run_checks(
        docs, resolved.rules, resolved.rule_docs, resolved.defaults, resolved.tool_exact
    ):
        ctx.report(code, message, loc, Severity.WARNING, rule_id)


# -- stage 5: index -------------------------------------------------------------------


def bundle_hash(sources: Sequence[SourceDocument]) -> str:
    """sha256 over (name in the set, text) pairs in name order: the identity of the bytes."""
    return text_hash((source.set_name, source.text) for source in sources)


def text_hash(named_texts: Iterable[tuple[str, str]]) -> str:
    """:func:`bundle_hash` from (name in the set, text) pairs, without parsing them.

    Lengths prefix each part, so no two different sets serialise the same way.
    """
    digest = hashlib.sha256()
    for name, text in sorted(named_texts, key=lambda pair: pair[0]):
        for part in (name, text):
            data = part.encode("utf-8", "surrogatepass")
            digest.update(len(data).to_bytes(8, "big"))
            digest.update(data)
    return "sha256:" + digest.hexdigest()


def stage_index(
    ctx: CompileContext,
    docs: list[m.PolicyDocument],
    resolved: Resolved,
    version: str | None,
) -> CompiledPolicy:
    digest = bundle_hash(ctx.sources)
    if version is None:
        # One version shared by every document names the set; otherwise the hash does.
        versions = {doc.metadata.version for doc in docs}
        only = versions.pop() if len(versions) == 1 else None
        version = only if only is not None else digest[7:19]
    return CompiledPolicy(
        version=version,
        bundle_hash=digest,
        rules=tuple(resolved.rules),
        defaults=resolved.defaults,
        declarations=resolved.declarations,
        warnings=tuple(
            sorted(
                (d for d in ctx.diagnostics if d.severity is Severity.WARNING),
                key=_diagnostic_order,
            )
        ),
        sources=tuple(s.file for s in ctx.sources),
        tool_exact=dict(resolved.tool_exact),
        tool_globs=tuple(resolved.tool_globs),
        spawn_graph=dict(resolved.spawn_graph),
    )
