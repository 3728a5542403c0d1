"""Reading and writing bundle archives (gzipped tar), defensively and deterministically.

Writing: entries sorted by name, mtime 0, uid/gid 0, empty owner names, mode 0644,
USTAR format, gzip header mtime 0 -- the same files always give the same bytes.

Reading never trusts the archive: the gzip stream is decompressed with a cap
(no decompression bombs) and must end cleanly; each tar entry must be a regular
file (directories are skipped) with a relative, normalised name; no duplicates,
no links or devices; per-file, total and entry-count caps; and every byte of the
tar stream that is not a member's content -- header checksums, padding and the
end-of-archive blocks -- must be what a well-formed archive has there.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from collections.abc import Mapping
from typing import Final

from aegis.bundles.errors import BundleError, BundleErrorCode

MAX_FILE_BYTES: Final = 4 << 20
MAX_TOTAL_BYTES: Final = 32 << 20
MAX_ENTRIES: Final = 1000
_BLOCK: Final = tarfile.BLOCKSIZE
#: The tar stream may hold headers, padding and end blocks on top of the content.
_MAX_TAR_BYTES: Final = MAX_TOTAL_BYTES + (MAX_ENTRIES + 4) * 4 * _BLOCK


def write_archive(files: Mapping[str, bytes]) -> bytes:
    """A deterministic ``.tar.gz`` of ``files`` (name -> content)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            check_name(name)
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip wrapper, header mtime 0
    return comp.compress(raw.getvalue()) + comp.flush()


def opa_relative(name: str) -> str:
    """``opa build`` writes entries as ``/.manifest``, ``/data.json``...: one leading
    slash means the bundle root, so it is dropped (nothing is ever extracted to disk;
    names only key files in memory). ``//x`` stays and is refused by check_name."""
    return name[1:] if name.startswith("/") and not name.startswith("//") else name


def check_name(name: str) -> None:
    """Refuse anything but a relative, normalised POSIX path."""
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        raise BundleError(BundleErrorCode.UNSAFE_PATH, f"unsafe entry name {name!r}")
    if len(name) > 1 and name[1] == ":":
        raise BundleError(BundleErrorCode.UNSAFE_PATH, f"unsafe entry name {name!r}")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BundleError(BundleErrorCode.UNSAFE_PATH, f"unsafe entry name {name!r}")


def _gunzip(data: bytes) -> bytes:
    if len(data) < 18:
        raise BundleError(BundleErrorCode.TRUNCATED, "archive is truncated (shorter than gzip)")
    if data[:2] != b"\x1f\x8b":
        raise BundleError(BundleErrorCode.CORRUPT, "not a gzip archive")
    inflater = zlib.decompressobj(31)
    try:
        out = inflater.decompress(data, _MAX_TAR_BYTES + 1)
    except zlib.error as exc:
        raise BundleError(BundleErrorCode.CORRUPT, f"corrupt gzip stream: {exc}") from None
    if len(out) > _MAX_TAR_BYTES:
        raise BundleError(BundleErrorCode.TOO_LARGE, f"archive expands past {_MAX_TAR_BYTES} bytes")
    if not inflater.eof:
        raise BundleError(
            BundleErrorCode.TRUNCATED, "archive is truncated (gzip stream ends early)"
        )
    if inflater.unused_data:
        raise BundleError(BundleErrorCode.CORRUPT, "trailing data after the gzip stream")
    return out


def read_archive(data: bytes) -> dict[str, bytes]:
    """The regular files of a bundle archive, validated (see the module docstring)."""
    raw = _gunzip(data)
    if len(raw) % _BLOCK:
        raise BundleError(BundleErrorCode.TRUNCATED, "tar stream is not a whole number of blocks")
    files: dict[str, bytes] = {}
    seen: set[str] = set()
    total = 0
    entries = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            while (member := tar.next()) is not None:
                entries += 1
                if entries > MAX_ENTRIES:
                    raise BundleError(
                        BundleErrorCode.TOO_LARGE, f"more than {MAX_ENTRIES} archive entries"
                    )
                name = opa_relative(member.name)
                if member.isdir():
                    check_name(name.rstrip("/"))
                    continue
                check_name(name)
                if member.issym() or member.islnk():
                    raise BundleError(BundleErrorCode.LINK, f"entry {name!r} is a link")
                if not member.isreg():
                    raise BundleError(
                        BundleErrorCode.UNSAFE_PATH, f"entry {name!r} is not a regular file"
                    )
                if name in seen:
                    raise BundleError(
                        BundleErrorCode.DUPLICATE_ENTRY, f"entry {name!r} appears twice"
                    )
                seen.add(name)
                if member.size > MAX_FILE_BYTES:
                    raise BundleError(
                        BundleErrorCode.TOO_LARGE,
                        f"entry {name!r} is larger than {MAX_FILE_BYTES} bytes",
                    )
                total += member.size
                if total > MAX_TOTAL_BYTES:
                    raise BundleError(
                        BundleErrorCode.TOO_LARGE, f"bundle is larger than {MAX_TOTAL_BYTES} bytes"
                    )
                start = member.offset_data
                end = start + member.size
                if end > len(raw):
                    raise BundleError(BundleErrorCode.TRUNCATED, f"entry {name!r} is truncated")
                padded = end + (-member.size % _BLOCK)
                if any(raw[end:padded]):
                    raise BundleError(BundleErrorCode.CORRUPT, f"entry {name!r} has bad padding")
                files[name] = raw[start:end]
            rest = raw[tar.offset :]
    except BundleError:
        raise
    except (tarfile.TarError, ValueError, OverflowError, UnicodeError) as exc:
        raise BundleError(BundleErrorCode.CORRUPT, f"corrupt tar archive: {exc}") from None
    # tarfile stops quietly at an invalid header after the first: anything but
    # the zero end-of-archive blocks left over means a damaged or smuggled header.
    if any(rest):
        raise BundleError(BundleErrorCode.CORRUPT, "corrupt tar archive: damaged entry header")
    return files
