# Sourced by scripts/run and scripts/test: make .venv match the lock file.
# Re-installs only when requirements/lock.txt or pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AEGIS_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "Aegis needs Python >= 3.11 (found: $("$PYTHON" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.aegis-installed"
WANT="$(cat "$ROOT/requirements/lock.txt" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --require-hashes -r "$ROOT/requirements/lock.txt"
  # xds-protos (Envoy's protos) ships its own, older copy of the
  # opentelemetry/proto modules; whichever wheel pip unpacks last wins. Put the
  # real opentelemetry-proto back on top, hash-checked, so the OTLP exporter
  # finds the messages it needs (e.g. InstrumentationScope).
  OTEL_PROTO="$(mktemp)"
  awk '/^opentelemetry-proto==/{on=1} on{print} on && !/\\$/{exit}' \
    "$ROOT/requirements/lock.txt" > "$OTEL_PROTO"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-deps --force-reinstall --require-hashes -r "$OTEL_PROTO"
  rm -f "$OTEL_PROTO"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-deps --no-build-isolation -e "$ROOT"
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
