"""Benchmark policy bundles; print one JSON document to stdout.

    python -m benchmarks.bundles            # full run (~1-2 min)
    python -m benchmarks.bundles --quick    # a smoke run (< 30 s), figures are rough
    python -m benchmarks.bundles --calls 500000 --rego-calls 1000

Sections (benchmarks/README.md says how to read them):

* ``compile_load``: the generated 5,000-rule / 100-tenant set (benchmarks.engine's
  generator) built into a bundle with ``build_bundle``, then ``load_bundle(bytes)``
  timed over several runs -- unsigned, and signed with Ed25519 and verified --
  with its parts (archive read, manifest, YAML parse, compile) timed apart;
* ``native_vs_regorus``: the same bundle's compiled policy decided natively
  (``decide``) and by regorus evaluating the bundle's own ``policy.rego``, for
  the same calls, with every compared decision checked for agreement; then the
  same for the 55-rule one-tenant set.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

from aegis.bundles import (
    MANIFEST_FILE,
    LoadedBundle,
    Manifest,
    PublicKey,
    build_bundle,
    keyring,
    load_bundle,
    read_archive,
    sign_bundle,
    verify_files,
    write_archive,
)
from aegis.bundles.layout import REGO_FILE, is_bundle_policy_file
from aegis.core.call import ToolCall, parse_call
from aegis.identity.keys import SigningKey
from aegis.policy.compiled import CompiledPolicy
from aegis.policy.compiler import compile_sources
from aegis.policy.engine import decide
from aegis.policy.reference import reference_evaluate
from aegis.policy.rego import export_rego, rego_input
from aegis.policy.source import parse_source
from benchmarks.engine.__main__ import (
    GENERATED_RULES,
    GENERATED_TENANTS,
    NOW,
    SMALL_RULES,
    _machine,
    _pin_to_one_cpu,
)
from benchmarks.engine.generate import DEFAULT_SEED, PolicySet, generate_policy_set
from benchmarks.engine.generate import generate_calls as generate_raw_calls
from benchmarks.engine.measure import cycle_to, gc_paused, percentiles, time_each

regorus: ModuleType | None
try:
    import regorus
except ImportError:  # a dev dependency (celine-regorus); the comparison is skipped without it
    regorus = None

TARGET_LOAD_S = 1.0
TARGET_RATIO = 20.0
QUERY = "data.aegis.decision"
BUILT_AT = NOW
#: regorus refuses a policy file over 1 MiB or 20,000 lines; the 5,000-rule module
#: is larger, so it is handed over as several modules of the same package.
REGORUS_MAX_FILE_BYTES = 1 << 20
REGORUS_MAX_FILE_LINES = 20_000
_MODULE_BYTES = 512 * 1024
_MODULE_LINES = 10_000
#: Hard caps, whatever the flags say.
MAX_NATIVE_CALLS = 5_000_000
MAX_REGO_CALLS = 5_000
REGO_TIME_BUDGET_S = 180.0
SMALL_REGO_FACTOR = 10  # the 55-rule set is cheap for regorus: it gets this many more calls


@dataclass(frozen=True)
class Compared:
    """A call both engines decide, with what the native engine said (as Rego reports it)."""

    category: str
    call: ToolCall
    want: dict[str, Any]


# -- helpers -----------------------------------------------------------------------------


def _spread(seconds: Sequence[float]) -> dict[str, Any]:
    return {
        "runs": len(seconds),
        "median_s": round(statistics.median(seconds), 4),
        "min_s": round(min(seconds), 4),
        "max_s": round(max(seconds), 4),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 1) if b else None


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def _build(pset: PolicySet) -> tuple[bytes, float]:
    """The set's YAML documents written to a temporary directory and built into a bundle."""
    with tempfile.TemporaryDirectory(prefix="aegis-bench-bundle-") as tmp:
        root = Path(tmp)
        for name, text in pset.texts:
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        bundle, seconds = _timed(
            lambda: build_bundle([root], revision="bench", built_at=BUILT_AT, use_git=False)
        )
    return bundle, seconds


# -- (a) compile and load ----------------------------------------------------------------


def _load_parts(data: bytes) -> dict[str, float]:
    """load_bundle's steps, one by one, with the same public pieces it uses."""
    pc = time.perf_counter
    t0 = pc()
    files = read_archive(data)
    t1 = pc()
    Manifest.parse(files[MANIFEST_FILE])
    t2 = pc()
    parsed = [
        parse_source(files[name].decode("utf-8"), name)
        for name in sorted(files)
        if is_bundle_policy_file(name)
    ]
    t3 = pc()
    compile_sources(parsed)
    t4 = pc()
    return {"read_archive": t1 - t0, "manifest": t2 - t1, "parse": t3 - t2, "compile": t4 - t3}


def bench_compile_load(pset: PolicySet, reps: int) -> tuple[dict[str, Any], bytes, LoadedBundle]:
    bundle, build_s = _build(pset)
    files = read_archive(bundle)
    _, archive_s = _timed(lambda: write_archive(files))
    key = SigningKey.generate("EdDSA")
    signed, sign_s = _timed(lambda: sign_bundle(bundle, key))
    keys = keyring([PublicKey.of(key)])
    signed_files = read_archive(signed)

    loads: list[LoadedBundle] = []
    unsigned_s: list[float] = []
    verified_s: list[float] = []
    verify_only_s: list[float] = []
    quiet_s: list[float] = []
    parts: dict[str, list[float]] = {}
    for _ in range(reps):  # interleaved, so drift on a shared host hits all alike
        gc.collect()
        loaded, seconds = _timed(lambda: load_bundle(bundle))
        unsigned_s.append(seconds)
        gc.collect()
        verified, seconds = _timed(lambda: load_bundle(signed, keys=keys))
        verified_s.append(seconds)
        if verified.signature is None:
            raise SystemExit("the signed bundle loaded without a verified signature")
        loads.append(loaded)
        gc.collect()
        # As the gateway reloads (aegis.bundles.manager._QuietLoad): collector paused.
        gc.disable()
        try:
            quiet_s.append(_timed(lambda: load_bundle(bundle))[1])
        finally:
            gc.enable()
        gc.collect()
        verify_only_s.append(_timed(lambda: verify_files(signed_files, keys))[1])
        gc.collect()
        for part, seconds in _load_parts(bundle).items():
            parts.setdefault(part, []).append(seconds)
    policy = loads[0].compiled_policy
    _, export_s = _timed(lambda: export_rego(policy))
    median = statistics.median(unsigned_s)
    sizes = {name: len(content) for name, content in files.items()}
    policy_bytes = sum(n for name, n in sizes.items() if is_bundle_policy_file(name))
    return (
        {
            "what": "the generated set's YAML documents written to a temp dir, built with "
            "build_bundle, then load_bundle(bytes) = archive read + manifest + YAML parse "
            "+ compile (validate, resolve, check, index) + bundle-id check",
            "tenants": len(pset.tenants),
            "rules": len(policy.rules),
            "build": {
                "build_s": round(build_s, 3),
                "what": "build_bundle: read + parse + compile the files, export policy.rego, "
                "write the manifest and the archive (git not consulted)",
                "rego_export_s": round(export_s, 3),
                "write_archive_s": round(archive_s, 3),
                "archive_bytes": len(bundle),
                "entries": len(files),
                "policy_files": sum(1 for name in files if is_bundle_policy_file(name)),
                "policy_yaml_bytes": policy_bytes,
                "policy_rego_bytes": sizes.get(REGO_FILE, 0),
                "uncompressed_bytes": sum(sizes.values()),
            },
            "load": {
                **_spread(unsigned_s),
                "gc": "enabled (a load allocates; collections are part of its cost), "
                "gc.collect() before each run",
            },
            "load_as_the_gateway_reloads": {
                **_spread(quiet_s),
                "gc": "paused during the load, as aegis.bundles.manager does for a reload "
                "(a load makes no cyclic garbage)",
                "target_seconds": TARGET_LOAD_S,
                "met": statistics.median(quiet_s) <= TARGET_LOAD_S,
            },
            "load_parts_median_s": {k: round(statistics.median(v), 4) for k, v in parts.items()},
            "signed": {
                "alg": key.alg,
                "sign_bundle_s": round(sign_s, 3),
                "archive_bytes": len(signed),
                "load_verified": _spread(verified_s),
                "verify_files_median_s": round(statistics.median(verify_only_s), 4),
                "load_verified_minus_load_median_s": round(
                    statistics.median(verified_s) - median, 4
                ),
                "what": "verify_files_median_s is the verification itself (JWS check + a "
                "hash of every file); the difference of the two load medians also holds "
                "run-to-run noise, which on a busy host can exceed it (even below zero)",
            },
            "target_seconds": TARGET_LOAD_S,
            "met": median <= TARGET_LOAD_S,
        },
        bundle,
        loads[0],
    )


# -- (b) native vs regorus ---------------------------------------------------------------


def regorus_modules(text: str) -> list[str]:
    """The exported module as regorus will take it: whole, or split between top-level
    statements into modules of the same package when it passes regorus's file limits."""
    if len(text.encode()) <= _MODULE_BYTES and text.count("\n") < _MODULE_LINES:
        return [text]
    head: list[str] = []  # the package line and imports, repeated in every module
    for line in text.splitlines():
        if line.startswith(("package ", "import ")):
            head.append(line)
        elif line.strip():
            break
    header = "\n\n".join(head)
    modules: list[str] = []
    current: list[str] = []
    size = lines = 0
    for block in text.rstrip("\n").split("\n\n"):
        if block[:1] in ("\t", " ", "}"):
            raise ValueError("policy.rego has a blank line inside a statement; cannot split it")
        block_bytes, block_lines = len(block.encode()) + 2, block.count("\n") + 2
        if current and (size + block_bytes > _MODULE_BYTES or lines + block_lines > _MODULE_LINES):
            modules.append("\n\n".join(current) + "\n")
            current = [header]
            size, lines = len(header) + 2, header.count("\n") + 2
        current.append(block)
        size += block_bytes
        lines += block_lines
    modules.append("\n\n".join(current) + "\n")
    return modules


def _want(policy: CompiledPolicy, sanitize_ids: frozenset[str], call: ToolCall) -> dict[str, Any]:
    """The native decision in the shape of data.aegis.decision."""
    native = decide(policy, call, NOW)
    shadow = native.shadow.outcome if native.shadow is not None else native.outcome
    return {
        "outcome": str(native.outcome),
        "rule_ids": list(native.rule_ids),
        "sanitizer_ids": sorted(r for r in native.rule_ids if r in sanitize_ids),
        "shadow_outcome": str(shadow),
    }


def _select(
    pset: PolicySet, policy: CompiledPolicy, unsupported: dict[str, str], want_n: int, seed: int
) -> tuple[list[Compared], Counter[str], int]:
    """Generated calls no rule left out of the Rego module matches (so it cannot matter)."""
    sanitize_ids = frozenset(r.id for r in policy.rules if r.effect == "sanitize")
    pool = generate_raw_calls(pset, 4 * want_n + 50, seed)
    chosen: list[Compared] = []
    skipped: Counter[str] = Counter()
    examined = 0
    for category, raw in pool:
        if len(chosen) >= want_n:
            break
        examined += 1
        call = parse_call(raw)
        if unsupported:  # the reference evaluator says which rules match (all of them)
            result = reference_evaluate(policy, call, NOW)
            matching = {t.rule_id for t in result.traces if t.matched}
            involved = sorted({unsupported[r] for r in matching if r in unsupported})
            if involved:
                skipped[", ".join(involved)] += 1
                continue
        chosen.append(Compared(category, call, _want(policy, sanitize_ids, call)))
    return chosen, skipped, examined


def _value(result: Any) -> Any:
    try:
        return result["result"][0]["expressions"][0]["value"]
    except (KeyError, IndexError, TypeError):
        return None


def bench_native_vs_regorus(
    rego: ModuleType,
    pset: PolicySet,
    loaded: LoadedBundle,
    *,
    n_native: int,
    n_rego: int,
    warmup: int,
    seed: int,
    budget_s: float,
) -> dict[str, Any]:
    policy = loaded.compiled_policy
    rego_text = loaded.files[REGO_FILE].decode("utf-8")
    export = export_rego(policy)
    unsupported = {u.rule_id: u.construct for u in export.unsupported}

    modules = regorus_modules(rego_text)
    t0 = time.perf_counter()
    engine = rego.Engine()
    for i, module in enumerate(modules):
        engine.add_policy(REGO_FILE if len(modules) == 1 else f"policy.{i}.rego", module)
    prepare_s = time.perf_counter() - t0

    chosen, skipped, examined = _select(pset, policy, unsupported, n_rego, seed)
    if not chosen:
        raise SystemExit("no generated call avoids the rules the Rego export leaves out")
    first = chosen[0]
    engine.set_input_json(json.dumps(rego_input(policy, first.call, NOW)))
    _, first_eval_s = _timed(lambda: engine.eval_query(QUERY))

    # regorus: every chosen call once, timed, and its answer checked against decide().
    pc = time.perf_counter_ns
    encode_ns: list[int] = []
    eval_ns: list[int] = []
    disagreements: list[str] = []
    compared: list[Compared] = []
    deadline = pc() + int(budget_s * 1e9)
    stopped = False
    with gc_paused():
        for item in chosen:
            t0n = pc()
            doc = json.dumps(rego_input(policy, item.call, NOW))
            t1n = pc()
            engine.set_input_json(doc)
            result = engine.eval_query(QUERY)
            t2n = pc()
            encode_ns.append(t1n - t0n)
            eval_ns.append(t2n - t1n)
            compared.append(item)
            got = _value(result)
            if isinstance(got, dict) and isinstance(got.get("sanitizer_ids"), list):
                got = {**got, "sanitizer_ids": sorted(got["sanitizer_ids"])}
            if got != item.want:
                disagreements.append(f"{item.call.tenant}/{item.call.tool}: {got} != {item.want}")
            if pc() > deadline:
                stopped = len(compared) < len(chosen)
                break

    # native: the same calls, warmed (each decided once, then a warm-up), then cycled.
    items = [(c.call, NOW) for c in compared]
    for call, now in items:
        decide(policy, call, now)
    time_each(decide, policy, cycle_to(items, warmup))
    native = percentiles(time_each(decide, policy, cycle_to(items, n_native)))

    total_ns = [a + b for a, b in zip(encode_ns, eval_ns, strict=True)]
    full = percentiles(total_ns)
    encode = percentiles(encode_ns)
    eval_only = percentiles(eval_ns)
    ratio = _ratio(full["mean_us"], native["mean_us"])
    return {
        "rules": len(policy.rules),
        "tenants": len(pset.tenants),
        "rego": {
            "source": "the bundle's policy.rego entry (equal to export_rego(compiled): "
            f"{export.text == rego_text})",
            "bytes": len(rego_text.encode()),
            "lines": rego_text.count("\n"),
            "modules": len(modules),
            "why_modules": "regorus refuses a policy file over "
            f"{REGORUS_MAX_FILE_BYTES} bytes or {REGORUS_MAX_FILE_LINES} lines; a larger "
            "module is split between top-level statements into modules of package aegis"
            if len(modules) > 1
            else "one module",
            "rules_left_out": len(unsupported),
            "rules_left_out_by_construct": dict(Counter(unsupported.values()).most_common()),
            "prepare_s": round(prepare_s, 3),
            "first_eval_ms": round(first_eval_s * 1000, 3),
        },
        "how": "regorus: one regorus.Engine, the module(s) added once before timing (the "
        "prepared path); per call rego_input + json.dumps (input_encoding), then "
        "set_input_json + eval_query('data.aegis.decision') (eval). Each compared call is "
        "evaluated once and its answer checked. native: decide(compiled, call, now) on the "
        "same calls, warmed, cycled to `native.samples`. gc off in both loops.",
        "calls": {
            "examined": examined,
            "compared": len(compared),
            "skipped_unsupported_rule_matches": sum(skipped.values()),
            "skipped_by_construct": dict(skipped.most_common()),
            "not_reached_time_budget": len(chosen) - len(compared),
            "stopped_at_time_budget": stopped,
            "disagreements": len(disagreements),
            "disagreement_examples": disagreements[:5],
            "categories": dict(sorted(Counter(c.category for c in compared).items())),
            "outcomes": dict(sorted(Counter(c.want["outcome"] for c in compared).items())),
        },
        "native": native,
        "regorus": full,
        "regorus_parts": {
            "input_encoding": {k: encode[k] for k in ("p50_us", "p99_us", "mean_us")},
            "eval": {k: eval_only[k] for k in ("p50_us", "p99_us", "mean_us")},
        },
        "ratio": ratio,
        "ratio_p50": _ratio(full["p50_us"], native["p50_us"]),
        "ratio_eval_only": _ratio(eval_only["mean_us"], native["mean_us"]),
        "what_ratio": "regorus mean (input encoding + eval) / native mean; ratio_eval_only "
        "leaves the input encoding out",
        "target_ratio": TARGET_RATIO,
        "met": ratio is not None and ratio >= TARGET_RATIO,
    }


# -- main ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bundles",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument(
        "--calls", type=int, help="native decisions per measurement (default 100000, quick 10000)"
    )
    parser.add_argument(
        "--rego-calls",
        type=int,
        help="calls regorus decides against the 5,000-rule bundle (default 300, quick 12); "
        f"the 55-rule bundle gets {SMALL_REGO_FACTOR}x as many",
    )
    parser.add_argument("--repeat", type=int, help="load_bundle runs (default 7, quick 2)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed")
    args = parser.parse_args(argv)
    n = args.calls if args.calls is not None else (10_000 if args.quick else 100_000)
    n_rego = args.rego_calls if args.rego_calls is not None else (12 if args.quick else 300)
    reps = args.repeat if args.repeat is not None else (2 if args.quick else 7)
    if not 0 < n <= MAX_NATIVE_CALLS:
        parser.error(f"--calls must be in 1..{MAX_NATIVE_CALLS}")
    if not 0 < n_rego <= MAX_REGO_CALLS:
        parser.error(f"--rego-calls must be in 1..{MAX_REGO_CALLS}")
    if not 0 < reps <= 50:
        parser.error("--repeat must be in 1..50")
    warmup = min(n, 20_000)
    budget = 20.0 if args.quick else REGO_TIME_BUDGET_S

    started = time.perf_counter()
    affinity = _pin_to_one_cpu()
    machine = _machine(affinity)
    machine["regorus_version"] = _version("celine-regorus") if regorus is not None else None
    sections: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = fn()
        sections[name] = round(time.perf_counter() - t0, 1)
        return result

    big = generate_policy_set(GENERATED_TENANTS, GENERATED_RULES, args.seed)
    compile_load, _, big_loaded = timed("compile_load", lambda: bench_compile_load(big, reps))
    comparison: dict[str, Any]
    if regorus is None:
        comparison = {"skipped": "regorus is not installed (dev dependency celine-regorus)"}
    else:
        rego = regorus
        generated = timed(
            "native_vs_regorus.generated",
            lambda: bench_native_vs_regorus(
                rego,
                big,
                big_loaded,
                n_native=n,
                n_rego=n_rego,
                warmup=warmup,
                seed=args.seed,
                budget_s=budget,
            ),
        )
        small = generate_policy_set(1, SMALL_RULES, args.seed)

        def small_run() -> dict[str, Any]:
            loaded = load_bundle(_build(small)[0])
            n_small = min(MAX_REGO_CALLS, n_rego * SMALL_REGO_FACTOR)
            return bench_native_vs_regorus(
                rego,
                small,
                loaded,
                n_native=n,
                n_rego=n_small,
                warmup=warmup,
                seed=args.seed,
                budget_s=budget,
            )

        comparison = {
            "generated": generated,
            "small": {
                "what": "tenant t000's 50 rules + the 5 global rules (as benchmarks.engine's "
                "scaling section), built into their own bundle",
                **timed("native_vs_regorus.small", small_run),
            },
        }
    doc = {
        "benchmark": "aegis.bundles: load_bundle, and decide() vs regorus on the bundle's Rego",
        "config": {
            "quick": args.quick,
            "calls": n,
            "rego_calls": n_rego,
            "load_runs": reps,
            "warmup_calls": warmup,
            "rego_time_budget_s": budget,
            "seed": args.seed,
            "now": NOW.isoformat(),
        },
        "machine": machine,
        "targets": {"load_median_s": TARGET_LOAD_S, "regorus_over_native_mean": TARGET_RATIO},
        "verdict": {
            "load_median_s": compile_load["load"]["median_s"],
            "load_met": compile_load["met"],
            **(
                {
                    "ratio_generated": comparison["generated"]["ratio"],
                    "ratio_small": comparison["small"]["ratio"],
                    "ratio_met": comparison["generated"]["met"] and comparison["small"]["met"],
                }
                if "generated" in comparison
                else {}
            ),
        },
        "compile_load": compile_load,
        "native_vs_regorus": comparison,
        "load_average_at_end": _load_average(),
        "section_s": sections,
        "duration_s": round(time.perf_counter() - started, 1),
    }
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()
    return 0


def _load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
