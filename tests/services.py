"""The real services the store backends are tested against, and what to do when one
does not answer: skip with the command that starts it -- except under CI
(``CI=true``), where a backend we ship must be tested for real, so the test fails."""

from __future__ import annotations

import os

import pytest

PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test connect_timeout=3"
PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_START = 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no'


def _unavailable(name: str, where: str, start: str, why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{name} on {where} does not answer under CI: {why}")
    pytest.skip(f"{name} on {where} does not answer; start it: {start}")


def require_postgres() -> None:
    try:
        import psycopg

        with psycopg.connect(PG_DSN) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        _unavailable("PostgreSQL", "127.0.0.1:5432", PG_START, str(exc))


def require_redis() -> None:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as exc:
        _unavailable("Redis", "127.0.0.1:6379", REDIS_START, str(exc))
