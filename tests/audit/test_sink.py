"""The audit stage inside the pipeline: durable writes, queued reads, sanitized params."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from aegis.audit.log import AuditLog
from aegis.audit.sink import AuditSink
from aegis.audit.sqlite_store import SqliteAuditStore
from aegis.core.call import ToolCall
from aegis.errors import ErrorCode
from aegis.pipeline import Pipeline, PolicyStore
from aegis.pipeline.stages import Refusal, RequestContext
from aegis.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
CTX = RequestContext(door="test")
SECRET = "AKIAIOSFODNN7EXAMPLE"


class KillSwitchOn:
    async def check(self, call: ToolCall) -> Refusal | None:
        return Refusal(ErrorCode.AUDIT_UNAVAILABLE, "agent frozen (test kill switch)")


async def rig(tmp_path: Path, example: str) -> tuple[Pipeline, AuditLog, SqliteAuditStore]:
    store = SqliteAuditStore(tmp_path / "audit.db")
    policy = PolicyStore(load_policy([ROOT / "examples" / example]))
    pipeline = Pipeline.with_defaults(policy, timeout=None)
    log = await AuditLog(store, log_id="t").open()
    pipeline.audit = AuditSink(log, policy)
    return pipeline, log, store


def slack(channel: str, text: str) -> ToolCall:
    return ToolCall(
        tenant="acme",
        agent_id="status-bot",
        tool="slack.post_message",
        params={"channel": channel, "text": text},
    )


def test_a_write_decision_is_durable_before_the_answer(tmp_path: Path) -> None:
    async def scenario() -> None:
        pipeline, log, store = await rig(tmp_path, "slack-posting")
        result = await pipeline.decide(slack("#eng-status", "deploy done"), CTX)
        # No waiting, no flush: the record is in the store when decide() returns.
        records = [r async for r in store.records()]
        assert [r.body["decision_id"] for r in records] == [result.decision.decision_id]
        body = records[0].body
        assert body["outcome"] == "sanitize" and body["kind"] == "write" and body["door"] == "test"
        assert body["rule_ids"] == ["slack-redact-pii"]
        await log.close()

    asyncio.run(scenario())


def test_reads_are_recorded_asynchronously(tmp_path: Path) -> None:
    async def scenario() -> None:
        pipeline, log, _store = await rig(tmp_path, "slack-posting")
        call = ToolCall(tenant="acme", agent_id="a", tool="slack.read_history", kind=None)
        result = await pipeline.decide(call, CTX)
        assert log.stats.records in {0, 1}  # queued, not awaited
        await log.close()
        records = [r async for r in SqliteAuditStore(tmp_path / "audit.db").records()]
        assert [r.body["decision_id"] for r in records] == [result.decision.decision_id]

    asyncio.run(scenario())


def test_a_secret_in_a_denied_slack_post_is_never_recorded(tmp_path: Path) -> None:
    async def scenario() -> None:
        pipeline, log, store = await rig(tmp_path, "slack-posting")
        pipeline.kill_switch = KillSwitchOn()
        text = f"leaked key {SECRET} and jane.doe@example.com"
        result = await pipeline.decide(slack("#incidents", text), CTX)
        assert result.decision.outcome == "deny"
        rows = [r async for r in store.records()]
        await log.close()
        assert len(rows) == 1
        stored = json.dumps([r.to_dict() for r in rows])
        assert SECRET not in stored and "jane.doe@example.com" not in stored
        assert rows[0].body["outcome"] == "deny"
        assert {r["detector"] for r in rows[0].body["redactions"]} == {"aws_access_key", "email"}
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("audit.db*"))
        assert SECRET.encode() not in raw

    asyncio.run(scenario())


def test_policy_activation_event(tmp_path: Path) -> None:
    async def scenario() -> None:
        pipeline, log, store = await rig(tmp_path, "slack-posting")
        policy = pipeline.policy.current
        assert isinstance(pipeline.audit, AuditSink)
        await pipeline.audit.record_policy_activation(policy)
        (record,) = [r async for r in store.records()]
        assert record.kind == "policy_activation"
        assert record.body["bundle_hash"] == policy.bundle_hash
        assert record.body["rules"] == len(policy.rules)
        await log.close()

    asyncio.run(scenario())
