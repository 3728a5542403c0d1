"""Redact before recording: with a redacting policy, no secret of the presidio-research
corpus reaches a span attribute, a log line, a metric or an audit record, whatever
the outcome of the call (DESIGN.md §6; issue "Telemetry a SIEM can join").

Corpus: microsoft/presidio-research ``synth_dataset_v2.json`` (MIT), synthetic
sentences with labelled PII spans; see ``../shared/corpora/README.md``. Every
sentence with a span of a type the policy's detectors cover is sent, as a tool's
``text`` param, through the pipeline with the real evidence stage (an SDK tracer on
an in-memory exporter, JsonLog into a StringIO, Prometheus metrics) and the audit
stage (:class:`aegis.audit.sink.AuditSink` over an :class:`~aegis.audit.log.AuditLog`
on a temporary SQLite file, read back from disk), whose records hold the params after
:func:`aegis.policy.engine.params_for_record` (redacted even for a denied call). The
tool is a write tool, so every record is durable before its answer. A third of the
calls are allowed (sanitized), a third denied, a third need approval.

Then every recorded byte is searched for every labelled value (stripped, with at
least 6 alphanumeric characters). Leaks must be 0 for the detectors whose recall
tests/dlp asserts at >= 0.95 (credit card, email, IBAN, US SSN, IP address); phone
numbers are reported separately and held to the DLP test's recall floor.

Run with ``pytest -s`` to see the JSON summary line.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import generate_latest

from aegis.audit.log import AuditLog
from aegis.audit.record import AuditRecord
from aegis.audit.sink import AuditSink
from aegis.audit.sqlite_store import SqliteAuditStore
from aegis.core.call import parse_call
from aegis.pipeline import Pipeline, PipelineResult, PolicyStore, RequestContext, TraceRefs
from aegis.policy import compile_text
from aegis.policy.engine import params_for_record
from aegis.telemetry import GatewayMetrics, JsonLog, TelemetryEvidence

CORPORA = Path(__file__).resolve().parents[2].parent / "shared" / "corpora"
PRESIDIO = CORPORA / "presidio-research" / "synth_dataset_v2.json"

#: Entity types whose detector recall tests/dlp asserts at >= 0.95: no leak allowed.
STRICT = {
    "CREDIT_CARD": "credit_card",
    "EMAIL_ADDRESS": "email",
    "IBAN_CODE": "iban",
    "US_SSN": "us_ssn",
    "IP_ADDRESS": "ip_address",
}
#: Reported separately: phone formats are open-ended (tests/dlp: recall 91/92).
REPORTED = {"PHONE_NUMBER": "phone"}
#: tests/dlp's phone recall floor: the share of phone numbers that may leak.
MAX_PHONE_LEAK_RATE = 0.02
#: Labelled values the detectors do not recognise, so the policy's redaction leaves
#: them in the params (forwarded and recorded alike): a recall miss, not a recording
#: leak. Each is named here with its reason, so a new miss fails this test.
#: The built-in card detector refuses "060426070011" on purpose (Luhn-valid, but
#: major industry identifier 0 is no card issuer, ISO/IEC 7812-1; tests/dlp counts
#: it as its one miss). A hardened policy closes that gap with a custom pattern
#: for long digit runs, as this one does, so nothing may leak at all.
KNOWN_DETECTOR_MISSES: set[str] = set()
MIN_ALNUM = 6
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)

POLICY = """\
apiVersion: aegis.dev/v1
kind: Policy
metadata: {name: notes, tenant: acme, version: "v7"}
tools:
  - {name: notes.send, kind: write}
rules:
  - id: notes-redact
    match: {tools: [notes.send]}
    effect: sanitize
    sanitize:
      detectors: [email, credit_card, iban, us_ssn, ip_address, phone]
      patterns:
        - {name: long_number, regex: '\\b[0-9]{12,19}\\b'}
      scan: [text]
  - id: notes-flagged
    match: {tools: [notes.send]}
    when: [{param: flag, eq: deny}]
    effect: deny
    reason: the agent flagged this note as not to be sent
  - id: notes-review
    match: {tools: [notes.send]}
    when: [{param: flag, eq: review}]
    effect: approval_needed
    reason: notes marked for review need a privacy officer
    approval: {group: privacy-office, ttl: 10m}
"""
FLAGS = ("send", "deny", "review")
EXPECTED = {"send": "sanitize", "deny": "deny", "review": "approval_needed"}


def _require(path: Path) -> Path:
    if path.exists():
        return path
    message = f"external corpus not found at {path} (see ../shared/corpora/README.md)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class UnredactedSink(AuditSink):
    """For the control test only: an audit stage that records the params as sent."""

    def decision_body(
        self,
        result: PipelineResult,
        ctx: RequestContext,
        *,
        start_ns: int,
        end_ns: int,
        refs: TraceRefs | None,
    ) -> dict[str, Any]:
        body = super().decision_body(result, ctx, start_ns=start_ns, end_ns=end_ns, refs=refs)
        return {**body, "params": result.call.params, "redactions": []}


def secrets_of(sentence: dict[str, Any], types: dict[str, str]) -> list[tuple[str, str]]:
    found = []
    for span in sentence["spans"]:
        if span["entity_type"] in types:
            value = span["entity_value"].strip()
            if sum(c.isalnum() for c in value) >= MIN_ALNUM:
                found.append((types[span["entity_type"]], value))
    return found


@pytest.fixture(scope="module")
def sentences() -> list[dict[str, Any]]:
    corpus: list[dict[str, Any]] = json.loads(_require(PRESIDIO).read_text(encoding="utf-8"))
    types = STRICT | REPORTED
    return [s for s in corpus if any(sp["entity_type"] in types for sp in s["spans"])]


@dataclass
class Run:
    sentences: list[dict[str, Any]]
    results: list[PipelineResult]
    spans: list[dict[str, Any]]
    log_lines: list[dict[str, Any]]
    audit: list[AuditRecord]
    #: Sink name -> everything it recorded, serialised.
    sinks: dict[str, str]
    #: Per call: its params as a record may hold them (after the policy's redactions).
    allowed: list[str]


def run_corpus(sentences: list[dict[str, Any]], tmp: Path, *, redact_audit: bool = True) -> Run:
    """Every sentence through the pipeline, with the evidence stage and the audit stage."""
    policy = compile_text(POLICY)
    store = PolicyStore(policy)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = GatewayMetrics()
    log = io.StringIO()
    evidence = TelemetryEvidence(
        tracer=provider.get_tracer("aegis"), metrics=metrics, log=JsonLog(log), policy=store
    )
    pipeline = Pipeline.with_defaults(store, evidence=evidence, clock=lambda: NOW)
    db = tmp / "audit.db"

    async def decide_all() -> tuple[list[PipelineResult], list[AuditRecord]]:
        audit_log = await AuditLog(SqliteAuditStore(db), log_id="t", clock=lambda: NOW).open()
        sink = AuditSink if redact_audit else UnredactedSink
        pipeline.audit = sink(audit_log, store, clock=lambda: NOW)
        results = []
        for i, sentence in enumerate(sentences):
            call = parse_call(
                {
                    "tenant": "acme",
                    "agent_id": "notes-agent",
                    "tool": "notes.send",
                    "params": {"text": sentence["full_text"], "flag": FLAGS[i % 3]},
                    "traceparent": f"00-{i + 1:032x}-{i + 1:016x}-01",
                }
            )
            results.append(await pipeline.decide(call, RequestContext(door="test")))
        await audit_log.close()
        reader = SqliteAuditStore(db)  # what is on disk, not what is in memory
        try:
            return results, [r async for r in reader.records()]
        finally:
            await reader.close()

    results, records = asyncio.run(decide_all())
    provider.shutdown()
    spans = [json.loads(s.to_json()) for s in exporter.get_finished_spans()]
    # ensure_ascii=False: values stay searchable as they were typed.
    sinks = {
        "span": json.dumps(spans, ensure_ascii=False),
        "log": log.getvalue(),
        "audit": json.dumps([r.to_dict() for r in records], ensure_ascii=False),
        "metrics": generate_latest(metrics.registry).decode("utf-8"),
        # What is forwarded for a permitted call (sanitize: the redacted params).
        "forwarded": json.dumps(
            [r.decision.sanitized_params for r in results if r.decision.outcome.permits],
            ensure_ascii=False,
        ),
    }
    allowed = [
        json.dumps(params_for_record(policy, r.call, NOW)[0], ensure_ascii=False) for r in results
    ]
    return Run(
        sentences,
        results,
        spans,
        [json.loads(line) for line in log.getvalue().splitlines()],
        records,
        sinks,
        allowed,
    )


def find_leaks(run: Run) -> tuple[Counter[str], list[dict[str, str]]]:
    """(labelled values checked per detector, every place one was found)."""
    checked = [
        (i, kind, value)
        for i, s in enumerate(run.sentences)
        for kind, value in secrets_of(s, STRICT | REPORTED)
    ]
    # The search can see a secret: every labelled value is in what the agent sent.
    sent = json.dumps([r.call.params for r in run.results], ensure_ascii=False)
    assert checked and all(value in sent for _, _, value in checked)
    found = []
    for i, kind, value in checked:
        for sink, text in run.sinks.items():
            if value in text:
                # Left in by the redaction itself (a detector miss), or added by
                # the recording path (a leak)?
                cause = "detector_miss" if value in run.allowed[i] else "recording"
                found.append(
                    {
                        "kind": kind,
                        "sink": sink,
                        "value": value,
                        "flag": FLAGS[i % 3],
                        "cause": cause,
                    }
                )
    return Counter(kind for _, kind, _ in checked), found


def test_no_secret_of_the_corpus_is_recorded(
    sentences: list[dict[str, Any]], tmp_path: Path
) -> None:
    started = time.monotonic()
    run = run_corpus(sentences, tmp_path)
    outcomes = Counter(str(r.decision.outcome) for r in run.results)
    assert [str(r.decision.outcome) for r in run.results] == [
        EXPECTED[FLAGS[i % 3]] for i in range(len(sentences))
    ], outcomes
    assert len(run.spans) == len(run.log_lines) == len(run.audit) == len(sentences)

    per_kind, found = find_leaks(run)
    strict_kinds = set(STRICT.values())
    recording_leaks = [f for f in found if f["cause"] == "recording"]
    strict_misses = [f for f in found if f["kind"] in strict_kinds]
    phone_missed = {f["value"] for f in found if f["kind"] == "phone"}
    elapsed = time.monotonic() - started
    print(
        json.dumps(
            {
                "redact_before_record": {
                    "sentences": len(sentences),
                    "outcomes": dict(outcomes),
                    "secrets_checked": dict(per_kind),
                    "strict_secrets_checked": sum(per_kind[k] for k in strict_kinds),
                    "leaks": len(recording_leaks),
                    "strict_detector_misses": sorted({f["value"] for f in strict_misses}),
                    "strict_detector_miss_occurrences": [
                        (f["sink"], f["flag"]) for f in strict_misses
                    ],
                    "phone_values_missed": len(phone_missed),
                    "records": {
                        "spans": len(run.spans),
                        "log_lines": len(run.log_lines),
                        "audit": len(run.audit),
                    },
                    "seconds": round(elapsed, 2),
                }
            },
            sort_keys=True,
        )
    )
    assert not recording_leaks, recording_leaks
    assert {f["value"] for f in strict_misses} == KNOWN_DETECTOR_MISSES, strict_misses
    assert len(phone_missed) <= MAX_PHONE_LEAK_RATE * per_kind["phone"], phone_missed
    assert elapsed < 30

    # Denied and approval_needed calls are recorded redacted too, not only sanitized ones.
    for outcome in ("deny", "approval_needed"):
        bodies = [r.body for r in run.audit if r.body["outcome"] == outcome]
        redacted = [b for b in bodies if b["redactions"]]
        # (The rest are sentences whose only labelled value a detector missed.)
        assert bodies and len(redacted) >= 0.95 * len(bodies)
        assert all("[REDACTED:" in b["params"]["text"] for b in redacted)


def test_records_of_one_decision_join(sentences: list[dict[str, Any]], tmp_path: Path) -> None:
    """Span, log line and audit record of each decision share decision_id, trace_id
    and span_id; the trace is the caller's (its traceparent)."""
    run = run_corpus(sentences[:30], tmp_path)
    spans = {
        s["attributes"]["aegis.decision_id"]: (
            s["context"]["trace_id"].removeprefix("0x"),
            s["context"]["span_id"].removeprefix("0x"),
            s["parent_id"].removeprefix("0x"),
        )
        for s in run.spans
    }
    lines = {line["decision_id"]: (line["trace_id"], line["span_id"]) for line in run.log_lines}
    for i, record in enumerate(run.audit):
        decision_id = record.body["decision_id"]
        assert decision_id == run.results[i].decision.decision_id
        ids = (record.body["trace_id"], record.body["span_id"])
        trace_id, span_id, parent_id = spans[decision_id]
        assert ids == (trace_id, span_id) == lines[decision_id]
        assert (trace_id, parent_id) == (f"{i + 1:032x}", f"{i + 1:016x}")


def test_the_search_finds_secrets_in_unredacted_records(
    sentences: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Control: an audit stage that records the params as sent is caught, for every
    labelled value (so a 0 above means nothing was recorded, not a blind search)."""
    run = run_corpus(sentences, tmp_path, redact_audit=False)
    _, found = find_leaks(run)
    leaked = {
        (f["kind"], f["value"]) for f in found if f["sink"] == "audit" and f["cause"] == "recording"
    }
    missed = {(f["kind"], f["value"]) for f in found if f["cause"] == "detector_miss"}
    all_values = {
        (kind, value) for s in sentences for kind, value in secrets_of(s, STRICT | REPORTED)
    }
    assert leaked | missed == all_values
    # Spans, log lines and metrics never carried params: only the audit stage leaked.
    assert {f["sink"] for f in found if f["cause"] == "recording"} == {"audit"}
