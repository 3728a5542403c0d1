"""Bundle sources for hot reload: HTTP (a real server on 127.0.0.1), files, folders."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aegis.bundles import (
    BundleError,
    BundleErrorCode,
    BundleSourceError,
    DirectorySource,
    Fetched,
    FileSource,
    HttpSource,
    PublicKey,
    backoff_delay,
    build_bundle,
    keyring,
    load_bundle,
    open_source,
    read_archive,
    sign_bundle,
)
from aegis.errors import ErrorCode
from aegis.identity.keys import SigningKey

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WHEN = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
PASSWORD = "pw-Zx81-secret"
TOKEN = "Bearer tok-Qm42-secret"


def build(revision: str | None = None) -> bytes:
    return build_bundle(
        [EXAMPLES / "finance-payments"], use_git=False, built_at=WHEN, revision=revision
    )


@pytest.fixture(scope="module")
def bundle() -> bytes:
    return build()


# -- a real bundle server ---------------------------------------------------------------


class BundleServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = "ok"
        self.requests: list[dict[str, str]] = []
        self.set_body(body)

    def set_body(self, body: bytes) -> None:
        self.body = body
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hanging up on a slow or oversized reply is the point

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/bundles/authz.tar.gz"


class Handler(BaseHTTPRequestHandler):
    server: BundleServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        srv.requests.append({k.lower(): v for k, v in self.headers.items()})
        mode = srv.mode
        if mode == "500":
            self.send_error(500, "Internal Server Error")
        elif mode == "304":
            self.send_response(304)
            self.end_headers()
        elif mode == "redirect":
            self.send_response(302)
            where = f"http://admin:{PASSWORD}@127.0.0.1:1/elsewhere?token={PASSWORD}"
            self.send_header("Location", where)
            self.end_headers()
        elif mode == "slow":
            time.sleep(1.5)
            self._send(srv.body)
        elif mode == "trickle":  # every byte in time, the whole far too late
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.05)
        elif mode == "big_declared":
            self.send_response(200)
            self.send_header("Content-Length", str(10 << 20))
            self.end_headers()
            self.wfile.write(b"\0" * 1024)
        elif mode == "big_streamed":  # no Content-Length: HTTP/1.0 body ends at close
            self.send_response(200)
            self.end_headers()
            for _ in range(64):
                self.wfile.write(b"\0" * 1024)
        elif mode == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", str(len(srv.body) + 100))
            self.end_headers()
            self.wfile.write(srv.body)
            self.wfile.flush()
            self.close_connection = True
        elif mode == "ignore_etag":  # always 200, never an ETag
            self._send(srv.body, etag=None)
        elif self.headers.get("If-None-Match") == srv.etag:
            self.send_response(304)
            self.send_header("ETag", srv.etag)
            self.end_headers()
        else:
            self._send(srv.body, etag=srv.etag)

    def _send(self, body: bytes, etag: str | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(body)))
        if etag is not None:
            self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(bundle: bytes) -> Iterator[BundleServer]:
    srv = BundleServer(bundle)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def with_creds(url: str) -> str:
    return url.replace("http://", f"http://reader:{PASSWORD}@") + f"?sig={PASSWORD}"


def assert_no_secrets(text: str) -> None:
    assert PASSWORD not in text
    assert "tok-Qm42" not in text
    assert "reader:" not in text


def fetch_all(source: Any, times: int = 1) -> list[Fetched]:
    async def run() -> list[Fetched]:
        try:
            return [await source.fetch() for _ in range(times)]
        finally:
            await source.aclose()

    return asyncio.run(run())


def source_error(source: Any) -> BundleSourceError:
    with pytest.raises(BundleSourceError) as info:
        fetch_all(source)
    err = info.value
    assert err.code is ErrorCode.BUNDLE_SOURCE_UNAVAILABLE
    assert err.code is BundleErrorCode.SOURCE_UNAVAILABLE
    assert str(err.code) == "bundle.source_unavailable"
    return err


# -- HTTP -----------------------------------------------------------------------------------


def test_http_etag_round_trip(server: BundleServer, bundle: bytes) -> None:
    source = open_source(server.url)
    assert isinstance(source, HttpSource)

    async def run() -> list[Fetched]:
        first = await source.fetch()
        second = await source.fetch()
        server.set_body(build(revision="r2"))
        third = await source.fetch()
        fourth = await source.fetch()
        await source.aclose()
        return [first, second, third, fourth]

    first, second, third, fourth = asyncio.run(run())
    assert first.data == bundle and first.etag is not None and first.origin == server.url
    load_bundle(first.data)
    assert "if-none-match" not in server.requests[0]
    assert "application/gzip" in server.requests[0]["accept"]
    assert "application/vnd.openpolicyagent.bundles" in server.requests[0]["accept"]
    # the ETag is sent back and the server's 304 means "unchanged"
    assert server.requests[1]["if-none-match"] == first.etag
    assert second == Fetched(None, first.etag, server.url)
    # a new bundle: new bytes, new ETag
    assert third.data == server.body and third.etag == server.etag != first.etag
    assert load_bundle(third.data).manifest.revision == "r2"
    assert server.requests[2]["if-none-match"] == first.etag
    assert fourth.data is None and server.requests[3]["if-none-match"] == third.etag


def test_http_same_bytes_without_etag_are_unchanged(server: BundleServer, bundle: bytes) -> None:
    server.mode = "ignore_etag"
    first, second = fetch_all(HttpSource(server.url), times=2)
    assert first.data == bundle and first.etag is None
    assert second.data is None
    assert all("if-none-match" not in r for r in server.requests)


def test_http_credentials_are_sent_but_never_shown(server: BundleServer) -> None:
    url = with_creds(server.url)
    source = open_source(url, headers={"Authorization": TOKEN})
    assert source.name == server.url + "?..."
    assert_no_secrets(source.name)
    (fetched,) = fetch_all(source)
    assert fetched.data is not None
    assert_no_secrets(fetched.origin)
    assert "authorization" in server.requests[0]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("500", "HTTP 500 Internal Server Error"),
        ("redirect", "HTTP 302 redirect to http://127.0.0.1:1/elsewhere?..."),
        ("304", "304 Not Modified to an unconditional request"),
        ("big_declared", f"Content-Length {10 << 20} is over the 4096-byte cap"),
        ("big_streamed", "body is over the 4096-byte cap"),
        ("truncated", "request failed (RemoteProtocolError"),
        ("slow", "timed out after 0.5s"),
        ("trickle", "timed out after 0.5s"),
    ],
)
def test_http_failures(server: BundleServer, bundle: bytes, mode: str, expected: str) -> None:
    server.mode = mode
    cap = len(bundle) + 1000 if mode == "truncated" else 4096
    source = open_source(
        with_creds(server.url), headers={"Authorization": TOKEN}, timeout=0.5, max_bytes=cap
    )
    started = time.monotonic()
    err = source_error(source)
    assert time.monotonic() - started < 1.4  # the whole fetch is bounded, not each read
    assert expected in err.message
    assert err.message.startswith(server.url + "?...: ")
    assert_no_secrets(str(err))


def test_http_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://reader:{PASSWORD}@127.0.0.1:{port}/b.tar.gz"
    err = source_error(open_source(url, headers={"Authorization": TOKEN}))
    assert "request failed (ConnectError" in err.message
    assert_no_secrets(str(err))


def test_http_source_needs_http_url() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpSource("ftp://example.invalid/b.tar.gz")


# -- files --------------------------------------------------------------------------


def test_file_source(tmp_path: Path, bundle: bytes) -> None:
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(bundle)
    source = open_source(str(path))
    assert isinstance(source, FileSource) and source.name == str(path)
    digest = "sha256:" + hashlib.sha256(bundle).hexdigest()

    async def run() -> None:
        first = await source.fetch()
        assert first == Fetched(bundle, digest, str(path))
        assert (await source.fetch()).data is None
        # touched (new mtime), same bytes: read again, found unchanged
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        assert await source.fetch() == Fetched(None, digest, str(path))
        # new bytes
        changed = build(revision="r2")
        path.write_bytes(changed)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
        third = await source.fetch()
        assert third.data == changed and third.etag != digest
        assert (await source.fetch()).data is None

    asyncio.run(run())
    path.unlink()
    err = source_error(source)
    assert str(path) in err.message and "cannot read" in err.message


def test_file_source_refuses_big_files(tmp_path: Path) -> None:
    path = tmp_path / "big.tar.gz"
    path.write_bytes(b"\0" * 5000)
    err = source_error(FileSource(path, max_bytes=4096))
    assert "5000 bytes is over the 4096-byte cap" in err.message


def test_missing_path_is_a_file_source() -> None:
    source = open_source("/nonexistent/aegis/bundle.tar.gz")
    assert isinstance(source, FileSource)
    assert "No such file" in source_error(source).message


# -- folders ------------------------------------------------------------------------


def test_unpacked_signed_bundle_round_trip(tmp_path: Path, bundle: bytes) -> None:
    key = SigningKey.generate()
    signed = sign_bundle(bundle, key, scope="write")
    for name, content in read_archive(signed).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    source = open_source(str(tmp_path))
    assert isinstance(source, DirectorySource)
    first, second = fetch_all(source, times=2)
    assert first.data == signed  # the same files pack to the same bytes
    loaded = load_bundle(first.data, keys=keyring([PublicKey.of(key)]), scope="write")
    assert loaded.signature is not None and loaded.signature.kid == key.kid
    assert second == Fetched(None, first.etag, str(tmp_path))


def test_policy_folder_builds_a_bundle(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    shutil.copy(EXAMPLES / "finance-payments" / "policy.yaml", policy)
    source = DirectorySource(tmp_path)

    async def run() -> None:
        first = await source.fetch()
        assert first.data is not None
        assert load_bundle(first.data).compiled_policy.rules
        assert (await source.fetch()).data is None
        # touched only: rebuilt, the same bytes, so unchanged
        st = policy.stat()
        os.utime(policy, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
        assert (await source.fetch()).data is None
        # edited: a new bundle
        policy.write_text(policy.read_text() + "\n# edited\n")
        edited = await source.fetch()
        assert edited.data is not None and edited.data != first.data
        assert edited.etag != first.etag
        assert read_archive(edited.data)["policy.yaml"].endswith(b"# edited\n")
        load_bundle(edited.data)
        # an invalid policy is the policy's fault, not the source's: the source
        # packs it (hashed, not compiled), the loader refuses it
        good = policy.read_text()
        policy.write_text("apiVersion: aegis.dev/v1\nkind: Policy\nrules: [\n")
        broken = await source.fetch()
        assert broken.data is not None
        with pytest.raises(BundleError) as info:
            load_bundle(broken.data)
        assert info.value.code is ErrorCode.BUNDLE_POLICY_INVALID
        policy.write_text(good)  # back to the edited bytes: a bundle again
        again = await source.fetch()
        assert again.data == edited.data

    asyncio.run(run())


def test_policy_folder_is_deterministic(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "finance-payments" / "policy.yaml", tmp_path / "policy.yaml")
    (a,) = fetch_all(DirectorySource(tmp_path))
    (b,) = fetch_all(DirectorySource(tmp_path))
    assert a.data is not None and a.data == b.data and a.etag == b.etag


@pytest.mark.parametrize("unpacked", [True, False])
def test_folder_symlinks_are_refused(tmp_path: Path, bundle: bytes, unpacked: bool) -> None:
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    if unpacked:
        for name, content in read_archive(bundle).items():
            (root / name).write_bytes(content)
    else:
        shutil.copy(EXAMPLES / "finance-payments" / "policy.yaml", root / "policy.yaml")
    secret = tmp_path / "outside.yaml"
    secret.write_text("not for the bundle\n")
    (root / "sub" / "extra.yaml").symlink_to(secret)
    with pytest.raises(BundleError) as info:
        fetch_all(DirectorySource(root))
    assert info.value.code is ErrorCode.BUNDLE_LINK
    assert "sub/extra.yaml" in info.value.message


def test_missing_folder_is_a_source_error(tmp_path: Path) -> None:
    err = source_error(DirectorySource(tmp_path / "gone"))
    assert "cannot read folder" in err.message


# -- backoff --------------------------------------------------------------------------


def test_backoff_delay_full_jitter() -> None:
    assert backoff_delay(0, base=1.0, cap=60.0) == 0.0
    top = [backoff_delay(n, base=0.5, cap=60.0, rand=lambda: 1.0) for n in range(1, 10)]
    assert top == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    half = [backoff_delay(n, base=1.0, cap=100.0, rand=lambda: 0.5) for n in range(1, 6)]
    assert half == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert backoff_delay(5, base=1.0, cap=60.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(10_000, base=1.0, cap=60.0, rand=lambda: 1.0) == 60.0
    for n in range(200):
        assert 0.0 <= backoff_delay(n, base=2.0, cap=30.0) <= 30.0
    with pytest.raises(ValueError, match="negative"):
        backoff_delay(1, base=-1.0, cap=1.0)


# -- TLS: a private bundle server ---------------------------------------------------------


def _ca_and_server_cert(tmp: Path, name: str) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate it issues for 127.0.0.1 (RFC 5280 profile
    basics: CA basicConstraints, an IP subjectAltName), as PEM files."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = tmp / f"{name}-ca.pem", tmp / f"{name}.pem", tmp / f"{name}.key"
    ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


def test_https_source_verifies_the_server_with_the_configured_ca(
    tmp_path: Path, bundle: bytes
) -> None:
    import ssl

    ca, cert, key = _ca_and_server_cert(tmp_path, "bundles")
    other_ca, _, _ = _ca_and_server_cert(tmp_path, "other")
    srv = BundleServer(bundle)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    srv.socket = tls.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    url = srv.url.replace("http://", "https://")
    try:
        trusted = open_source(url, ca_file=ca, timeout=5)
        fetched = asyncio.run(trusted.fetch())
        assert fetched.data == bundle
        assert load_bundle(fetched.data).compiled_policy.rules
        for source in (open_source(url, timeout=5), open_source(url, ca_file=other_ca, timeout=5)):
            with pytest.raises(BundleSourceError) as info:
                asyncio.run(source.fetch())
            assert info.value.code is ErrorCode.BUNDLE_SOURCE_UNAVAILABLE
            assert "CERTIFICATE_VERIFY_FAILED" in info.value.message
    finally:
        srv.shutdown()
        thread.join()
        srv.server_close()
