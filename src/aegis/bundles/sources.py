"""Bundle *sources* for hot reload: where a bundle archive's bytes come from.

A source only fetches bytes and says whether they changed; the caller loads,
verifies and compiles them with :func:`aegis.bundles.load_bundle` and keeps the
last good bundle when anything fails. Three kinds, chosen by :func:`open_source`:

* :class:`HttpSource` -- OPA's bundle service API
  (https://www.openpolicyagent.org/docs/management-bundles#bundle-service-api):
  ``GET <url>``; ``200`` carries a gzipped tarball; the server should send an
  ``ETag``, which is echoed in ``If-None-Match`` so an unchanged bundle costs a
  ``304 Not Modified`` (RFC 9110 §8.8.3, §13.1.2, §15.4.5).
* :class:`FileSource` -- a bundle archive on disk.
* :class:`DirectorySource` -- an unpacked bundle (it has a ``.manifest``) or a
  folder of policy sources that is built into a bundle on each change.

Every source returns ``Fetched(data=None, ...)`` when nothing changed since its
last successful fetch, so a poll of an unchanged source compiles nothing.
Sources are polled by one task at a time (``fetch`` is not reentrant).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import ssl
import stat
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from aegis.bundles.archive import MAX_ENTRIES, MAX_FILE_BYTES, MAX_TOTAL_BYTES, write_archive
from aegis.bundles.build import build_bundle
from aegis.bundles.errors import BundleError, BundleErrorCode
from aegis.bundles.signing import MANIFEST_FILE
from aegis.errors import AegisError

__all__ = [
    "BundleSource",
    "BundleSourceError",
    "DirectorySource",
    "Fetched",
    "FileSource",
    "HttpSource",
    "backoff_delay",
    "open_source",
]

#: OPA answers long-polling requests with the vendor type and plain polls with
#: ``application/gzip`` (Bundle Service API); accept either.
ACCEPT: Final = "application/vnd.openpolicyagent.bundles, application/gzip"
#: A policy folder is built with a fixed ``built_at`` so unchanged sources give
#: byte-identical archives (and so ``data=None``).
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_READ_CHUNK: Final = 1 << 16


@dataclass(frozen=True, slots=True)
class Fetched:
    """One fetch: the archive bytes, or ``None`` when unchanged since the last one."""

    data: bytes | None
    etag: str | None
    origin: str


class BundleSource(Protocol):
    name: str

    async def fetch(self) -> Fetched: ...

    async def aclose(self) -> None: ...


class BundleSourceError(AegisError):
    """The source could not be read (``bundle.source_unavailable``); retry later."""

    def __init__(self, message: str) -> None:
        super().__init__(BundleErrorCode.SOURCE_UNAVAILABLE, message)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def backoff_delay(
    failures: int, *, base: float, cap: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after ``failures`` consecutive failures.

    "Full jitter" from the AWS Architecture Blog, *Exponential Backoff And Jitter*
    (2015): ``sleep = random_between(0, min(cap, base * 2 ** attempt))``. The
    randomness spreads many gateways' retries against one bundle server instead
    of having them all retry in lock step. 0 failures -> 0; never more than ``cap``.
    """
    if base < 0 or cap < 0:
        raise ValueError("base and cap must not be negative")
    if failures <= 0:
        return 0.0
    # Past 2**64 the ceiling is the cap anyway; this also keeps the float finite.
    ceiling = cap if failures > 64 else min(cap, base * 2.0 ** (failures - 1))
    return min(cap, max(0.0, ceiling * rand()))


#: A file modified this recently may be modified again within the same mtime tick
#: without its size changing, so its stats cannot vouch that it is unchanged.
RACY_SECONDS: Final = 2.0


def _settled(mtimes_ns: Iterable[int]) -> bool:
    """Whether every mtime is old enough for (size, mtime) to prove "unchanged".

    Git's "racily clean" problem: two writes within one timestamp tick that keep
    the size look identical by stats alone. A fingerprint taken while a file is
    that young is not remembered, so the next poll reads and hashes it again.
    """
    horizon = time.time_ns() - int(RACY_SECONDS * 1e9)
    return all(m < horizon for m in mtimes_ns)


# -- files ------------------------------------------------------------------------------


class _LocalSource:
    """A source on this machine's disk, read in a worker thread so the event loop
    that serves decisions never waits on it."""

    name: str

    async def fetch(self) -> Fetched:
        return await asyncio.to_thread(self._fetch)

    async def aclose(self) -> None:
        return None

    def _fetch(self) -> Fetched:
        raise NotImplementedError


class FileSource(_LocalSource):
    """A bundle archive file. Reads run in a worker thread (the loop never blocks)."""

    def __init__(self, path: Path | str, *, max_bytes: int = MAX_TOTAL_BYTES) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.max_bytes = max_bytes
        self._stat: tuple[int, int, int] | None = None
        self._digest: str | None = None

    def _fetch(self) -> Fetched:
        try:
            with self.path.open("rb") as fh:
                st = os.fstat(fh.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise BundleSourceError(f"{self.name}: not a regular file")
                key = (st.st_mtime_ns, st.st_size, st.st_ino)
                if key == self._stat:  # cheap check first: nothing to read
                    return Fetched(None, self._digest, self.name)
                if st.st_size > self.max_bytes:
                    raise BundleSourceError(
                        f"{self.name}: {st.st_size} bytes is over the {self.max_bytes}-byte cap"
                    )
                # Read one byte past the cap: the file may grow after the stat.
                data = fh.read(self.max_bytes + 1)
        except OSError as exc:
            raise BundleSourceError(f"{self.name}: cannot read ({exc.strerror})") from None
        if len(data) > self.max_bytes:
            raise BundleSourceError(f"{self.name}: larger than the {self.max_bytes}-byte cap")
        digest = _sha256(data)
        unchanged = digest == self._digest  # touched, copied over with the same bytes...
        self._stat, self._digest = (key if _settled([st.st_mtime_ns]) else None), digest
        return Fetched(None if unchanged else data, digest, self.name)


# -- directories ------------------------------------------------------------------------

#: (relative posix name, size, mtime_ns) of every file, sorted.
_Fingerprint = tuple[tuple[str, int, int], ...]


def _scan(root: Path) -> _Fingerprint:
    """Every regular file under ``root``; symlinks and special files are refused.

    A symlink could point outside the folder (content changing unseen by this
    fingerprint, or secrets packed into a bundle), so none is followed.
    """
    found: list[tuple[str, int, int]] = []
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                name = prefix + entry.name
                if entry.is_symlink():
                    raise BundleError(BundleErrorCode.LINK, f"{root}: {name!r} is a symlink")
                if entry.is_dir(follow_symlinks=False):
                    pending.append((Path(entry.path), name + "/"))
                    continue
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    raise BundleError(
                        BundleErrorCode.UNSAFE_PATH, f"{root}: {name!r} is not a regular file"
                    )
                found.append((name, st.st_size, st.st_mtime_ns))
    return tuple(sorted(found))


def _check_caps(root: Path, fingerprint: _Fingerprint) -> None:
    """The caps read_archive enforces, checked from the stats before reading anything."""
    if len(fingerprint) > MAX_ENTRIES:
        raise BundleError(BundleErrorCode.TOO_LARGE, f"{root}: more than {MAX_ENTRIES} files")
    for name, size, _ in fingerprint:
        if size > MAX_FILE_BYTES:
            raise BundleError(
                BundleErrorCode.TOO_LARGE, f"{root}: {name!r} is larger than {MAX_FILE_BYTES} bytes"
            )
    if sum(size for _, size, _ in fingerprint) > MAX_TOTAL_BYTES:
        raise BundleError(BundleErrorCode.TOO_LARGE, f"{root}: over {MAX_TOTAL_BYTES} bytes")


class DirectorySource(_LocalSource):
    """An unpacked bundle (has ``.manifest``) or a folder of policy sources.

    An unpacked bundle is re-packed as is (``.signatures.json`` included), so its
    signature still verifies; a policy folder is built with :func:`build_bundle`,
    whose ``BundleError`` (e.g. ``bundle.policy_invalid``) propagates unchanged:
    it is the policy's fault, not the source's. Link or oversized files raise
    ``BundleError`` too. Only a folder that cannot be read is a source error.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        max_bytes: int = MAX_TOTAL_BYTES,
        roots: Sequence[str] | None = None,
        tenant_subtrees: bool = False,
    ) -> None:
        self.path = Path(path)
        #: A folder of tenants/<tenant>/ folders, built as a bundle of several tenants.
        self.tenant_subtrees = tenant_subtrees
        self.name = str(self.path)
        self.max_bytes = max_bytes
        #: Manifest roots for a bundle built from policy sources (a tenant's own
        #: folder is rooted at tenants/<tenant>); an unpacked bundle keeps its own.
        self.roots = tuple(roots) if roots else None
        self._fingerprint: _Fingerprint | None = None
        self._digest: str | None = None

    def _fetch(self) -> Fetched:
        try:
            fingerprint = _scan(self.path)
        except OSError as exc:
            raise BundleSourceError(f"{self.name}: cannot read folder ({exc.strerror})") from None
        if fingerprint == self._fingerprint:
            return Fetched(None, self._digest, self.name)
        if any(name == MANIFEST_FILE for name, _, _ in fingerprint):
            data = self._pack(fingerprint)
        else:
            data = build_bundle(
                [self.path],
                use_git=False,
                built_at=_EPOCH,
                compile_policy=False,
                roots=self.roots,
                tenant_subtrees=self.tenant_subtrees,
            )
        if len(data) > self.max_bytes:
            raise BundleSourceError(
                f"{self.name}: bundle is {len(data)} bytes, over the {self.max_bytes}-byte cap"
            )
        digest = _sha256(data)
        unchanged = digest == self._digest
        # The fingerprint taken *before* reading: a write racing the read changes the
        # stats, so the next poll rebuilds rather than missing it.
        settled = _settled(m for _, _, m in fingerprint)
        self._fingerprint, self._digest = (fingerprint if settled else None), digest
        return Fetched(None if unchanged else data, digest, self.name)

    def _pack(self, fingerprint: _Fingerprint) -> bytes:
        _check_caps(self.path, fingerprint)
        files: dict[str, bytes] = {}
        for name, _, _ in fingerprint:
            try:
                # O_NOFOLLOW: a file swapped for a symlink after the scan is not followed.
                fd = os.open(self.path / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                with os.fdopen(fd, "rb") as fh:
                    content = fh.read(MAX_FILE_BYTES + 1)
            except OSError as exc:
                raise BundleSourceError(
                    f"{self.name}: cannot read {name!r} ({exc.strerror})"
                ) from None
            if len(content) > MAX_FILE_BYTES:
                raise BundleError(
                    BundleErrorCode.TOO_LARGE,
                    f"{self.path}: {name!r} is larger than {MAX_FILE_BYTES} bytes",
                )
            files[name] = content
        return write_archive(files)


class PolicyPathsSource(_LocalSource):
    """Policy files and folders as ``policy.paths`` lists them, built into one bundle.

    The gateway's default source: a folder of YAML policies edited in place is
    rebuilt and hot-reloaded like any bundle. Change detection is by the files'
    (name, size, mtime) first, then by the built bytes.
    """

    def __init__(self, paths: Sequence[Path], *, max_bytes: int = MAX_TOTAL_BYTES) -> None:
        self.paths = [Path(p) for p in paths]
        self.name = ", ".join(str(p) for p in self.paths)
        self.max_bytes = max_bytes
        self._fingerprint: tuple[_Fingerprint, ...] | None = None
        self._digest: str | None = None

    def _scan_all(self) -> tuple[_Fingerprint, ...]:
        out: list[_Fingerprint] = []
        for path in self.paths:
            try:
                if path.is_dir():
                    out.append(_scan(path))
                else:
                    st = path.stat()
                    out.append(((path.name, st.st_size, st.st_mtime_ns),))
            except OSError as exc:
                raise BundleSourceError(f"{path}: cannot read ({exc.strerror})") from None
        return tuple(out)

    def _fetch(self) -> Fetched:
        fingerprint = self._scan_all()
        if fingerprint == self._fingerprint:
            return Fetched(None, self._digest, self.name)
        data = build_bundle(self.paths, use_git=False, built_at=_EPOCH, compile_policy=False)
        if len(data) > self.max_bytes:
            raise BundleSourceError(
                f"{self.name}: bundle is {len(data)} bytes, over the {self.max_bytes}-byte cap"
            )
        digest = _sha256(data)
        unchanged = digest == self._digest
        settled = _settled(m for part in fingerprint for _, _, m in part)
        self._fingerprint, self._digest = (fingerprint if settled else None), digest
        return Fetched(None if unchanged else data, digest, self.name)


# -- HTTP -------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` without userinfo, query or fragment: presigned URLs carry credentials
    in the query (``X-Amz-Signature=...``), basic auth in the userinfo."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "..." if parts.query else "", ""))


class HttpSource:
    """OPA's bundle service API over HTTP(S), with ``ETag``/``If-None-Match`` caching.

    Redirects are not followed (OPA does not follow them by default either): a 3xx
    is an error naming its ``Location``. ``headers`` (e.g. ``Authorization``) are
    sent on every request and never appear in ``name`` or in error messages; nor
    do the URL's userinfo or query.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        max_bytes: int = MAX_TOTAL_BYTES,
        ca_file: Path | None = None,
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("an HTTP bundle source needs an http:// or https:// URL")
        self.url = url
        self.name = redact_url(url)
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._headers = dict(headers or {})
        # A private bundle server's CA (PEM); None: httpx's default bundle (certifi).
        # Verification is never off: a bundle fetched from an impostor is a policy.
        self._tls: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
        )
        self._client: httpx.AsyncClient | None = None
        self._etag: str | None = None
        self._digest: str | None = None

    def _secrets(self) -> list[str]:
        parts = urlsplit(self.url)
        found = [self.url, parts.query, parts.password or "", *self._headers.values()]
        return [s for s in found if len(s) >= 4]

    def _error(self, what: str) -> BundleSourceError:
        # Exception texts (from httpx or the OS) may quote the request: scrub them.
        for secret in self._secrets():
            what = what.replace(secret, "***")
        return BundleSourceError(f"{self.name}: {what}")

    def _client_for_loop(self) -> httpx.AsyncClient:
        if self._client is None:
            # trust_env=False: settings are read once, from aegis.yaml; proxies,
            # .netrc or CA bundles named in the environment do not steer fetches.
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                timeout=httpx.Timeout(self.timeout),
                trust_env=False,
                verify=self._tls,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def fetch(self) -> Fetched:
        headers = {**self._headers, "Accept": ACCEPT, "Accept-Encoding": "identity"}
        if self._etag is not None:
            headers["If-None-Match"] = self._etag  # echoed verbatim (RFC 9110 §13.1.2)
        try:
            # httpx's timeout bounds each read; this bounds the whole fetch, so a
            # server trickling a byte at a time cannot hold a poll forever.
            async with asyncio.timeout(self.timeout):
                return await self._get(headers)
        except TimeoutError:
            raise self._error(f"timed out after {self.timeout:g}s") from None
        except httpx.TimeoutException:
            raise self._error(f"timed out after {self.timeout:g}s") from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._error(f"request failed ({type(exc).__name__}: {exc})") from None

    async def _get(self, headers: Mapping[str, str]) -> Fetched:
        client = self._client_for_loop()
        async with client.stream("GET", self.url, headers=headers) as response:
            status = response.status_code
            etag = response.headers.get("ETag")
            if status == 304:
                if self._etag is None:
                    raise self._error("304 Not Modified to an unconditional request")
                # A 304 repeats the ETag a 200 would carry (RFC 9110 §15.4.5).
                self._etag = etag or self._etag
                return Fetched(None, self._etag, self.name)
            if 300 <= status < 400:
                location = response.headers.get("Location", "")
                where = redact_url(location) if location else "no Location"
                raise self._error(f"HTTP {status} redirect to {where} (redirects are not followed)")
            if status != 200:
                raise self._error(f"HTTP {status} {response.reason_phrase}".rstrip())
            data = await self._read(response)
        digest = _sha256(data)
        unchanged = digest == self._digest  # a server that ignores If-None-Match
        self._etag, self._digest = etag, digest
        return Fetched(None if unchanged else data, etag, self.name)

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise self._error(f"Content-Length {declared} is over the {self.max_bytes}-byte cap")
        body = bytearray()
        async for chunk in response.aiter_bytes(_READ_CHUNK):
            body += chunk
            if len(body) > self.max_bytes:
                raise self._error(f"body is over the {self.max_bytes}-byte cap")
        return bytes(body)


def open_source(
    spec: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    max_bytes: int = MAX_TOTAL_BYTES,
    roots: Sequence[str] | None = None,
    ca_file: Path | None = None,
    tenant_subtrees: bool = False,
) -> BundleSource:
    """An http(s) URL -> HttpSource; an existing folder -> DirectorySource; else a file.

    ``roots`` applies to a folder of policy sources, which this side builds."""
    if spec.lower().startswith(("http://", "https://")):
        return HttpSource(
            spec, headers=headers, timeout=timeout, max_bytes=max_bytes, ca_file=ca_file
        )
    if Path(spec).is_dir():
        return DirectorySource(
            spec, max_bytes=max_bytes, roots=roots, tenant_subtrees=tenant_subtrees
        )
    return FileSource(spec, max_bytes=max_bytes)
