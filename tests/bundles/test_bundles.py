from __future__ import annotations

import contextlib
import io
import json
import tarfile
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aegis.bundles import (
    MAX_FILE_BYTES,
    SIGNATURES_FILE,
    BundleError,
    BundleErrorCode,
    Manifest,
    PublicKey,
    build_bundle,
    check_roots,
    keyring,
    load_bundle,
    read_archive,
    sign_bundle,
    write_archive,
)
from aegis.identity.keys import SigningKey

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def build_example(name: str = "finance-payments", **kwargs: Any) -> bytes:
    return build_bundle([EXAMPLES / name], built_at=WHEN, **kwargs)


@pytest.fixture(scope="module")
def bundle() -> bytes:
    return build_example()


C = BundleErrorCode


def codes_of(data: bytes, **kwargs: object) -> BundleErrorCode:
    with pytest.raises(BundleError) as info:
        load_bundle(data, **kwargs)  # type: ignore[arg-type]
    return info.value.bundle_code


# -- build ---------------------------------------------------------------------------


def test_build_is_deterministic_and_has_opa_layout(bundle: bytes) -> None:
    assert build_example() == bundle
    files = read_archive(bundle)
    assert {".manifest", "data.json", "policy.yaml"} <= set(files)
    assert json.loads(files["data.json"]) == {}
    manifest = json.loads(files[".manifest"])
    assert manifest["roots"] == [""]
    meta = manifest["metadata"]["aegis"]
    loaded = load_bundle(bundle)
    assert meta["bundle_id"] == loaded.compiled_policy.bundle_hash
    assert meta["built_at"] == "2024-01-02T03:04:05Z"
    assert manifest["revision"]
    assert ("policy.rego" in files) == meta["rego"]["included"]
    # gzip header mtime is 0, tar entries are sorted with fixed metadata
    assert bundle[4:8] == b"\0\0\0\0"
    with tarfile.open(fileobj=io.BytesIO(zlib.decompress(bundle, 31))) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.mode) for m in members} == {(0, 0, 0, 0o644)}


def test_build_options() -> None:
    data = build_example(revision="r1", roots=["aegis/finance"], data={"k": 1})
    loaded = load_bundle(data)
    assert loaded.manifest.revision == "r1"
    assert loaded.manifest.roots == ("aegis/finance",)
    assert json.loads(loaded.files["data.json"]) == {"k": 1}
    with pytest.raises(BundleError) as info:
        build_example(roots=["a", "a/b"])
    assert info.value.bundle_code is C.INVALID_MANIFEST


def test_build_refuses_invalid_policy(tmp_path: Path) -> None:
    root = tmp_path
    (root / "p.yaml").write_text("version: 1\nrules: [{}]\n")
    with pytest.raises(BundleError) as info:
        build_bundle([root])
    assert info.value.bundle_code is C.POLICY_INVALID
    assert info.value.diagnostics


# -- sign / verify -------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_sign_verify_round_trip(bundle: bytes, alg: str) -> None:
    key = SigningKey.generate(alg)  # type: ignore[arg-type]
    public = PublicKey.from_pem(PublicKey.of(key).to_pem())
    assert public.kid == key.kid
    signed = sign_bundle(bundle, key, scope="write")
    loaded = load_bundle(signed, keys=keyring([public]), scope="write")
    assert loaded.signature is not None
    assert loaded.signature.kid == key.kid
    assert loaded.signature.scope == "write"
    assert SIGNATURES_FILE not in loaded.signature.files
    payload = json.loads(read_archive(signed)[SIGNATURES_FILE])
    assert list(payload) == ["signatures"] and len(payload["signatures"]) == 1
    # re-signing replaces the signature, and is deterministic for Ed25519
    if alg == "EdDSA":
        assert sign_bundle(signed, key, scope="write") == signed


def test_unsigned_wrong_key_wrong_scope_refused(bundle: bytes) -> None:
    key, other = SigningKey.generate(), SigningKey.generate("ES256")
    keys = keyring([PublicKey.of(key)])
    signed = sign_bundle(bundle, key, scope="write")
    assert codes_of(bundle, keys=keys) is C.UNSIGNED
    assert codes_of(bundle, require_signature=True) is C.UNSIGNED
    assert codes_of(signed, keys=keyring([PublicKey.of(other)])) is C.UNKNOWN_KEY
    assert codes_of(signed, keys=keys, scope="read") is C.WRONG_SCOPE
    assert load_bundle(signed, keys=keys).signature is not None  # no scope required


def test_extra_and_missing_files_refused(bundle: bytes) -> None:
    key = SigningKey.generate()
    keys = keyring([PublicKey.of(key)])
    files = read_archive(sign_bundle(bundle, key))
    assert codes_of(write_archive({**files, "extra.txt": b"x"}), keys=keys) is C.EXTRA_FILE
    fewer = {k: v for k, v in files.items() if k != "data.json"}
    assert codes_of(write_archive(fewer), keys=keys) is C.MISSING_FILE


def test_json_files_hash_canonically(bundle: bytes) -> None:
    key = SigningKey.generate()
    files = read_archive(sign_bundle(bundle, key))
    files["data.json"] = b"{ }"  # the same value, re-serialised
    load_bundle(write_archive(files), keys=keyring([PublicKey.of(key)]))


def test_unsigned_bundle_still_checks_its_bundle_id(bundle: bytes) -> None:
    files = read_archive(bundle)
    files["policy.yaml"] = files["policy.yaml"] + b"\n# edited\n"
    assert codes_of(write_archive(files)) is C.FILE_MISMATCH


# -- the byte-class tamper test -------------------------------------------------------


def _flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _signed() -> tuple[bytes, dict[str, PublicKey]]:
    key = SigningKey.generate()
    return sign_bundle(build_example(), key, scope="write"), keyring([PublicKey.of(key)])


def test_every_byte_class_of_a_signed_bundle_is_caught() -> None:
    signed, keys = _signed()
    load_bundle(signed, keys=keys, scope="write")
    files = read_archive(signed)
    cases: dict[str, bytes] = {}
    # each file's content (the manifest and the signature file included)
    for name, content in files.items():
        for i in sorted({0, len(content) // 3, len(content) // 2, len(content) - 1}):
            cases[f"{name}@{i}"] = write_archive({**files, name: _flip(content, i)})
    # each part of the JWS: header, payload, signature
    sig_text = files[SIGNATURES_FILE].decode()
    token = json.loads(sig_text)["signatures"][0]
    start = sig_text.index(token)
    offset = 0
    for part_name, part in zip(("header", "payload", "signature"), token.split("."), strict=True):
        for j in (1, len(part) // 2):
            at = start + offset + j
            cases[f"jws-{part_name}@{j}"] = write_archive(
                {**files, SIGNATURES_FILE: _flip(files[SIGNATURES_FILE], at)}
            )
        offset += len(part) + 1
    # tar framing: headers (name, mode, mtime, checksum, type), padding, end blocks
    tar = zlib.decompress(signed, 31)
    for where in (0, 100, 136, 148, 156, 512 * 2 + 0, 512 * 2 + 124, len(tar) - 1):
        cases[f"tar@{where}"] = _gzip(_flip(tar, where))
    first_size = len(files[sorted(files)[0]])
    padding = 512 + first_size + 1  # the first entry's content is padded to 512
    assert first_size % 512
    cases["tar-padding"] = _gzip(_flip(tar, padding))
    # gzip framing: magic, method, deflate body, CRC-32, ISIZE (flag bits: see below)
    for where in (0, 1, 2, 10, len(signed) // 2, len(signed) - 8, len(signed) - 4):
        cases[f"gzip@{where}"] = _flip(signed, where)
    assert len(cases) > 40
    missed = []
    for label, data in cases.items():
        try:
            load_bundle(data, keys=keys, scope="write")
        except BundleError:
            continue
        missed.append(label)
    assert missed == []


def test_gzip_header_metadata_bytes_carry_no_content() -> None:
    # RFC 1952 FLG.FTEXT (bit 0 of byte 3), MTIME, XFL and OS are informational:
    # changing them cannot change a file, so they are not (and need not be) caught.
    signed, keys = _signed()
    for where in (3, 4, 8, 9):
        assert load_bundle(_flip(signed, where), keys=keys).files == read_archive(signed)


def _gzip(raw: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    return comp.compress(raw) + comp.flush()


# -- bad archives ---------------------------------------------------------------------


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return _gzip(raw.getvalue())


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "/etc/passwd"
    return info, b""


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 0.9, 0.99])
def test_truncated(bundle: bytes, fraction: float) -> None:
    cut = bundle[: int(len(bundle) * fraction)]
    assert codes_of(cut) in {C.TRUNCATED, C.CORRUPT}


@pytest.mark.parametrize(
    ("archive", "code"),
    [
        (b"not a tarball at all, just some bytes", C.CORRUPT),
        (_tar(_file("../escape.yaml")), C.UNSAFE_PATH),
        (_tar(_file("a/../../escape.yaml")), C.UNSAFE_PATH),
        (_tar(_file("//etc/cron.d/x")), C.UNSAFE_PATH),
        (_tar(_file("/../escape.yaml")), C.UNSAFE_PATH),
        (_tar(_file("/a.yaml"), _file("a.yaml")), C.DUPLICATE_ENTRY),
        (_tar(_link("policy.yaml", tarfile.SYMTYPE)), C.LINK),
        (_tar(_link("policy.yaml", tarfile.LNKTYPE)), C.LINK),
        (_tar(_link("dev", tarfile.CHRTYPE)), C.UNSAFE_PATH),
        (_tar(_file("big.yaml", b"\0" * (MAX_FILE_BYTES + 1))), C.TOO_LARGE),
        (_tar(_file("a.yaml"), _file("a.yaml")), C.DUPLICATE_ENTRY),
        (_tar(*(_file(f"f{i}.txt") for i in range(10_000))), C.TOO_LARGE),
        (_tar(_file("policy.yaml")), C.MISSING_MANIFEST),
        (_tar(_file(".manifest", b"[1]"), _file("p.yaml")), C.INVALID_MANIFEST),
        (_tar(_file(".manifest", b'{"roots": 3}')), C.INVALID_MANIFEST),
        (_tar(_file(".manifest", b"{}"), _file("p.yaml", b"version: [")), C.POLICY_INVALID),
        (_tar(_file(".manifest", b"{}")), C.POLICY_INVALID),
        (_gzip(b"\x01" * 1024), C.CORRUPT),
    ],
)
def test_bad_archives_refused(archive: bytes, code: BundleErrorCode) -> None:
    assert codes_of(archive) is code


def test_trailing_garbage_after_gzip_refused(bundle: bytes) -> None:
    assert codes_of(bundle + b"junk") is C.CORRUPT


# -- roots ----------------------------------------------------------------------------


def test_roots_overlap_between_tenants() -> None:
    check_roots({"a": Manifest(roots=("acme",)), "b": Manifest(roots=("globex", "x/y"))})
    for other in (("acme/payments",), ("",), ("acme",)):
        with pytest.raises(BundleError) as info:
            check_roots({"a": Manifest(roots=("acme",)), "b": Manifest(roots=other)})
        assert info.value.bundle_code is C.ROOTS_OVERLAP
    check_roots({"a": Manifest(roots=("acme",)), "b": Manifest(roots=("acmecorp",))})


# -- fuzz ----------------------------------------------------------------------------

_BASE = build_example()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes_only_bundle_errors(data: bytes) -> None:
    with pytest.raises(BundleError):
        load_bundle(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(_BASE) - 1), st.integers(1, 255))
def test_fuzz_mutated_bundle_only_bundle_errors(i: int, x: int) -> None:
    data = _BASE[:i] + bytes([_BASE[i] ^ x]) + _BASE[i + 1 :]
    with contextlib.suppress(BundleError):
        load_bundle(data)


def test_examples_all_build() -> None:
    for path in sorted(EXAMPLES.iterdir()):
        if (path / "policy.yaml").exists():
            assert load_bundle(build_example(path.name)).compiled_policy.rules


def test_entries_written_as_opa_build_does_are_read() -> None:
    """`opa build` writes `/.manifest`, `/data.json`: the leading slash is the root."""
    from aegis.bundles.archive import read_archive

    files = read_archive(_tar(_file("/.manifest", b"{}"), _file("/data.json", b"{}")))
    assert set(files) == {".manifest", "data.json"}


def test_a_gateway_source_build_hashes_what_the_loader_compiles() -> None:
    """build_bundle(compile_policy=False) skips compiling and Rego; its bundle id is
    still the compiled policy's, so load_bundle accepts it."""
    for name in ("finance-payments", "egress", "slack-posting"):
        cheap = build_example(name, compile_policy=False, use_git=False)
        full = build_example(name, use_git=False)
        files = read_archive(cheap)
        assert "policy.rego" not in files and "policy.rego" in read_archive(full)
        loaded = load_bundle(cheap)
        assert loaded.manifest.bundle_id == load_bundle(full).manifest.bundle_id
        assert loaded.manifest.bundle_id == loaded.compiled_policy.bundle_hash
