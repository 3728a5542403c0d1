"""The documents under docs/ stay true to the code they describe.

* every complete policy in docs/policy-language.md compiles;
* docs/errors.md has a heading for every ErrorCode, and no heading for a code
  that does not exist;
* docs/cli.md documents every subcommand of ``aegis policy``;
* docs/gateway.md documents every key of ``AegisSettings`` (and no key that does
  not exist), and its all-defaults example is valid;
* docs/quickstart.md only talks to 127.0.0.1/localhost: every URL in a code block
  is loopback, except the targets of ``curl -x`` through the local forward proxy,
  which the example policies must deny (so the proxy never forwards them); its
  settings file is valid;
* relative links in the documents this checks point at files that exist.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import click
import pytest
import yaml
from pydantic import BaseModel

from aegis.cli.main import cli
from aegis.core.call import parse_call
from aegis.core.decision import Outcome
from aegis.doors.envoy import MappingConfig
from aegis.doors.mcp import load_config
from aegis.errors import ErrorCode
from aegis.policy import compile_text, load_policy
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.engine import decide
from aegis.settings import AegisSettings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: A fenced block: its info string (language) and its body.
_FENCE = re.compile(r"^```([A-Za-z0-9_-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_CODE_HEADING = re.compile(r"^### `([^`]+)`[ \t]*$", re.MULTILINE)
_CLI_HEADING = re.compile(r"^### aegis policy ([a-z][a-z-]*)[ \t]*$", re.MULTILINE)


def _read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _policy_blocks() -> list[tuple[str, str, str]]:
    """(id, file name to compile as, text) of every complete policy in the reference."""
    text = _read("policy-language.md")
    found = []
    for match in _FENCE.finditer(text):
        lang, body = match.group(1), match.group(2)
        line = text.count("\n", 0, match.start()) + 1
        if lang == "yaml" and body.startswith("apiVersion:"):
            found.append((f"yaml-line-{line}", f"policy-language.md:{line}.yaml", body))
        elif lang == "json" and '"apiVersion"' in body:
            found.append((f"json-line-{line}", f"policy-language.md:{line}.json", body))
    return found


POLICY_BLOCKS = _policy_blocks()


def test_the_reference_has_complete_policies() -> None:
    # Guards the extraction itself: a broken regex must not pass vacuously.
    assert len(POLICY_BLOCKS) >= 15


@pytest.mark.parametrize(
    ("file", "text"), [b[1:] for b in POLICY_BLOCKS], ids=[b[0] for b in POLICY_BLOCKS]
)
def test_policy_example_compiles(file: str, text: str) -> None:
    if file.endswith(".json"):
        assert json.loads(text)["apiVersion"] == "aegis.dev/v1"
    compiled = compile_text(text, file)  # raises PolicyLoadError with every diagnostic
    assert compiled.bundle_hash.startswith("sha256:")


def test_yaml_fragments_do_not_pose_as_policies() -> None:
    """A block that is a whole policy starts with apiVersion, so the test above sees it."""
    text = _read("policy-language.md")
    for match in _FENCE.finditer(text):
        lang, body = match.group(1), match.group(2)
        if lang == "yaml" and not body.startswith("apiVersion:"):
            assert not re.search(r"^apiVersion:", body, re.MULTILINE), body[:80]


def test_every_error_code_has_a_heading() -> None:
    headings = _CODE_HEADING.findall(_read("errors.md"))
    codes = {str(code) for code in ErrorCode}
    assert len(headings) == len(set(headings)), "a code is documented twice"
    missing = sorted(codes - set(headings))
    unknown = sorted(set(headings) - codes)
    assert not missing, f"undocumented codes: {missing}"
    assert not unknown, f"headings for codes that do not exist: {unknown}"


def test_every_policy_subcommand_is_documented() -> None:
    documented = set(_CLI_HEADING.findall(_read("cli.md")))
    policy = cli.commands["policy"]  # as the user sees it, rollout commands included
    assert isinstance(policy, click.Group)
    commands = set(policy.commands)
    assert commands, "the policy group has no commands?"
    assert not commands - documented, f"undocumented: {sorted(commands - documented)}"
    assert not documented - commands, f"documented but absent: {sorted(documented - commands)}"


# -- docs/gateway.md: every settings key ----------------------------------------------

#: A row of the settings table: its first cell is a backticked dotted key.
_SETTINGS_ROW = re.compile(r"^\| `([a-z_]+(?:\.[a-z_]+)*)` \|", re.MULTILINE)


def _settings_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every leaf key of the settings model, dotted (``api.max_body_bytes``)."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(_settings_keys(annotation, f"{prefix}{name}."))
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_the_settings_walk_finds_nested_keys() -> None:
    keys = _settings_keys(AegisSettings)
    assert {"policy.paths", "api.max_body_bytes", "mcp.options", "shutdown_grace_seconds"} <= set(
        keys
    )
    assert not any(key in {"api", "envoy", "proxy", "mcp"} for key in keys)


def test_every_settings_key_is_documented() -> None:
    """Each key of AegisSettings has its row in the settings table, and each row is a key."""
    text = _read("gateway.md")
    keys = _settings_keys(AegisSettings)
    rows = _SETTINGS_ROW.findall(text)
    missing = [key for key in keys if key not in rows]
    assert not missing, f"docs/gateway.md has no row for: {missing}"
    # Rows of any table whose first cell names a settings section must be real keys.
    claimed = [k for k in rows if k.split(".")[0] in AegisSettings.model_fields]
    unknown = sorted(set(claimed) - set(keys))
    assert not unknown, f"docs/gateway.md documents keys that do not exist: {unknown}"
    assert len(claimed) == len(set(claimed)), "a key is documented twice"


def test_the_gateway_defaults_example_is_valid_and_complete() -> None:
    (block,) = [
        body
        for lang, body in _blocks("gateway.md")
        if lang == "yaml" and body.startswith("# Every key at its default")
    ]
    data = yaml.safe_load(block)
    assert AegisSettings.model_validate(data) == AegisSettings()
    assert _dotted(data) == set(_settings_keys(AegisSettings))


def _dotted(data: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in data.items():
        if isinstance(value, dict) and value and f"{prefix}{key}" not in _OPAQUE:
            keys |= _dotted(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


#: Settings whose value is a door's own configuration, not settings keys.
_OPAQUE = {"envoy.mapping", "proxy.options", "mcp.options"}


# -- docs/quickstart.md: loopback only ------------------------------------------------

_URL = re.compile(r"\bhttps?://[^\s'\"`)<>]+")
_LOOPBACK_NAMES = {"localhost"}


def _blocks(name: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _FENCE.finditer(_read(name))]


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _command_lines(body: str) -> list[str]:
    """Shell lines with backslash continuations joined."""
    return body.replace("\\\n", " ").splitlines()


def _curl_commands() -> list[list[str]]:
    commands = []
    for lang, body in _blocks("quickstart.md"):
        if lang != "sh":
            continue
        for line in _command_lines(body):
            if re.search(r"(^|[\s;&|(])curl\s", line):
                words = shlex.split(line, comments=True)
                start = words.index("curl")
                commands.append(words[start:])
    return commands


def _proxy_of(words: list[str]) -> str | None:
    for i, word in enumerate(words):
        if word in ("-x", "--proxy"):
            return words[i + 1]
    return None


@cache
def _example_policy() -> CompiledPolicy:
    return load_policy([ROOT / "examples"])


def _proxied_call(proxy: str, target: str, words: list[str]) -> dict[str, Any]:
    """The ToolCall the forward proxy builds for ``curl -x proxy target`` (docs/doors/proxy.md)."""
    user = unquote(urlsplit(proxy).username or "")
    tenant, _, agent = user.partition("/")
    url = urlsplit(target)
    sends_body = any(w in ("-d", "--data", "--data-raw", "--json") for w in words)
    if url.scheme == "https":  # CONNECT host:443: the tunnel tool, a write
        return {
            "tenant": tenant,
            "agent_id": agent,
            "tool": "http.request",
            "destination": f"https://{url.hostname}:{url.port or 443}",
            "params": {"method": "CONNECT"},
        }
    return {
        "tenant": tenant,
        "agent_id": agent,
        "tool": "http.request" if sends_body else "http.get",
        "destination": target,
    }


def test_the_quickstart_has_curl_commands_for_every_listener() -> None:
    commands = _curl_commands()
    assert len(commands) >= 15, "the extraction found too few curl commands"
    text = " ".join(" ".join(c) for c in commands)
    for port in (8181, 3128, 8765):  # 9191 is gRPC: the Python snippet
        assert f"127.0.0.1:{port}" in text


def test_every_quickstart_curl_targets_loopback_only() -> None:
    for words in _curl_commands():
        urls = [w for w in words if _URL.fullmatch(w)]
        assert urls, f"a curl command without a URL: {words}"
        proxy = _proxy_of(words)
        if proxy is None:
            offenders = [u for u in urls if not _is_loopback(urlsplit(u).hostname)]
            assert not offenders, f"curl leaves the machine: {' '.join(words)}"
            continue
        assert _is_loopback(urlsplit(proxy).hostname), f"a proxy that is not local: {proxy}"
        for target in (u for u in urls if u != proxy):
            if _is_loopback(urlsplit(target).hostname):
                continue
            if not urlsplit(proxy).username:
                continue  # no credentials: refused 407 before any decision
            call = parse_call(_proxied_call(proxy, target, words))
            decision = decide(_example_policy(), call, datetime.now(UTC))
            assert decision.outcome is Outcome.DENY, (
                f"the proxy would forward {target} to the internet: {decision.reason}"
            )


def test_every_url_in_a_quickstart_code_block_is_loopback() -> None:
    """Python snippets and config included; curl -x targets are checked above."""
    proxied = {
        u for words in _curl_commands() if _proxy_of(words) for u in words if _URL.fullmatch(u)
    }
    for _lang, body in _blocks("quickstart.md"):
        for url in _URL.findall(body):
            if url in proxied:
                continue
            assert _is_loopback(urlsplit(url).hostname), url


def test_the_quickstart_settings_file_is_valid() -> None:
    (block,) = [
        body for lang, body in _blocks("quickstart.md") if "cat > .aegis/quickstart.yaml" in body
    ]
    text = block.split("<<'EOF'\n", 1)[1].rsplit("EOF", 1)[0]
    settings = AegisSettings.model_validate(yaml.safe_load(text))
    for path in settings.policy.paths:  # relative to .aegis/
        assert (ROOT / ".aegis" / path).resolve().exists(), path
    MappingConfig.from_dict(settings.envoy.mapping)
    config = load_config(settings.mcp.options)
    assert settings.mcp.enabled and config.upstreams


# -- links -------------------------------------------------------------------------------

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} (.+?)[ \t]*$", re.MULTILINE)
_CHECKED = ["quickstart.md", "gateway.md", "architecture.md", "../README.md"]


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {
        re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        for heading in _HEADING.findall(text)
    }


@pytest.mark.parametrize("name", _CHECKED)
def test_relative_links_resolve(name: str) -> None:
    path = (DOCS / name).resolve()
    broken = []
    for target in _LINK.findall(path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file) if file else path
        if not linked.exists() or (
            anchor and linked.suffix == ".md" and anchor not in _anchors(linked)
        ):
            broken.append(target)
    assert not broken, f"{name}: broken links {broken}"
