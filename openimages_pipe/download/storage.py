"""Where a download folder lives, on a local disk or in object storage, and how it is written.

Owns the download folder's location (`--out`, and the folder that `status` and `build-splits
--downloaded` read): a local path, or `s3://bucket/prefix`. Any other `scheme://`, and a URL
whose `//` was collapsed (`s3:/b/p`), is refused in one line: a URL never becomes a local folder
named `s3:`. A `Folder` names its files by keys relative to it (`manifest.parquet`,
`shards/00000-of-00001-RUN-00000.parquet`): the same layout on a disk and in a bucket, so
polars, DuckDB and `datasets` read both the same way. Every write is whole or nothing, in the way
each medium allows:

| operation | `LocalFolder` | `S3Folder` |
| --- | --- | --- |
| `write` | temporary name, fsync, `os.replace` (`atomic`) | one PUT: all of it or nothing |
| `create` (only if absent) | `os.link` of a temporary file | PUT with `If-None-Match: *` (`s3`) |
| `lock` (one run per share) | `flock`, which dies with its process | a lease object (`lease`) |
| list, read, delete | pathlib | pyarrow's `S3FileSystem` |

An object store has no rename and no temporary files: a PUT killed midway leaves nothing (or an
incomplete multipart upload, which no listing shows). An S3 write that fails is an `OutputError`,
a read that fails an `InputError`, as on a disk.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import fnmatch
import io
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from openimages_pipe.download import atomic, s3
from openimages_pipe.errors import InputError, OutputError

URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://(.*)", re.DOTALL)
# `s3:/bucket/p`: a URL whose `//` a Path collapsed; a one-letter "c:" is a drive, not a scheme
COLLAPSED_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:(/|$)")
SCHEMES = ("s3",)


class Folder(abc.ABC):
    """A download folder: files by keys relative to it, each written whole or not at all."""

    url: str  # what messages and run records call it

    def where(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"

    @abc.abstractmethod
    def check(self, key: str) -> None:
        """Refuse (ValueError) a key that would leave the folder."""

    @abc.abstractmethod
    def make(self) -> None: ...

    @abc.abstractmethod
    def write(self, key: str, fill: Callable[[BinaryIO], object], fsync: bool = True) -> None: ...

    @abc.abstractmethod
    def create(self, key: str, data: bytes) -> bool:
        """Write `key` only if it is absent; False if it was there (then it is left as it was)."""

    @abc.abstractmethod
    def read_bytes(self, key: str) -> bytes | None:
        """The file's bytes; None if it is absent."""

    @abc.abstractmethod
    def list(self, pattern: str) -> list[str]:
        """Sorted keys of the files matching a glob of keys (`*` stays inside one folder)."""

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def source(self, key: str) -> Any:
        """What polars and pyarrow read the file from: a local path, or an open S3 file."""

    @abc.abstractmethod
    def lock(self, key: str, refusal: str) -> contextlib.AbstractContextManager[None]:
        """Held by one process at a time; a second gets an InputError saying `refusal`."""

    @abc.abstractmethod
    def is_file(self, key: str) -> bool: ...


def locate(out: str | Path | Folder) -> Folder:
    """The folder that `--out` (or a command's download folder argument) names."""
    if isinstance(out, Folder):
        return out
    text = str(out)
    if match := URL.fullmatch(text):
        scheme = match[1].lower()
        if scheme not in SCHEMES:
            message = (
                f"unsupported URL scheme {scheme}://: give a local folder or s3://BUCKET/PREFIX"
            )
            raise InputError(message, value=text)
        return S3Folder.of(match[2])
    if COLLAPSED_URL.match(text):
        message = "looks like a URL with one slash: write s3://BUCKET/PREFIX, or ./ before a folder"
        raise InputError(message, value=text)
    return LocalFolder(Path(out))


def location(text: str | Path) -> Path | str:
    """`--out` as a config holds it: a Path, or the s3:// URL (refused now if it is neither)."""
    folder = locate(text)
    return folder.root if isinstance(folder, LocalFolder) else folder.url


class LocalFolder(Folder):
    """A folder on a local (or POSIX network) filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def path(self, key: str) -> Path:
        return self.root / key

    def check(self, key: str) -> None:
        """`root / key`, refusing what resolves outside `root` (.., absolute, symlinks)."""
        root = self.root.resolve()
        if not (root / key).resolve().is_relative_to(root):
            raise ValueError(f"refusing to write {key!r}: it resolves outside {root}")

    def make(self) -> None:
        with atomic.writing(self.root):
            self.root.mkdir(parents=True, exist_ok=True)

    def write(self, key: str, fill: Callable[[BinaryIO], object], fsync: bool = True) -> None:
        atomic.write_file(self.path(key), fill, fsync)

    def create(self, key: str, data: bytes) -> bool:
        """A link, unlike a rename, fails on a taken name."""
        path = self.path(key)
        temporary = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        with atomic.writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                temporary.write_bytes(data)
                os.link(temporary, path)
                return True
            except FileExistsError:
                return False
            finally:
                temporary.unlink(missing_ok=True)

    def read_bytes(self, key: str) -> bytes | None:
        path = self.path(key)
        return path.read_bytes() if path.is_file() else None

    def is_file(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, pattern: str) -> list[str]:
        found = sorted(p for p in self.root.glob(pattern.removeprefix("./")) if p.is_file())
        return [p.relative_to(self.root).as_posix() for p in found]

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def source(self, key: str) -> Path:
        return self.path(key)

    @contextlib.contextmanager
    def lock(self, key: str, refusal: str) -> Iterator[None]:
        """flock: the kernel lets go when the process dies, SIGKILL included."""
        path = self.path(key)
        with atomic.writing(path):
            lock = open(path, "w")  # noqa: SIM115 (closed by the `with` below)
        with lock as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(refusal, self.root) from None
            yield


class S3Folder(Folder):
    """`s3://bucket/prefix` through pyarrow's S3FileSystem, and signed conditional requests."""

    def __init__(self, bucket: str, prefix: str, credentials: s3.Credentials) -> None:
        from pyarrow import fs  # here: `locate` serves --help-fast commands too

        self.bucket, self.prefix = bucket, prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.client = s3.S3Client(credentials)
        endpoint = credentials.endpoint or ""
        self.fs = fs.S3FileSystem(
            access_key=credentials.access_key, secret_key=credentials.secret_key,
            session_token=credentials.session_token, region=credentials.region,
            endpoint_override=endpoint.split("://", 1)[-1] or None,
            scheme="http" if endpoint.startswith("http://") else "https",
            allow_bucket_creation=True,
        )  # fmt: skip
        self._leases: list = []  # the share locks this process holds here (`lease.Lease`)

    @classmethod
    def of(cls, rest: str) -> S3Folder:
        bucket, _, prefix = rest.partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise InputError("not an S3 bucket name (3-63 of a-z 0-9 . -)", value=f"s3://{rest}")
        return cls(bucket, prefix.strip("/"), s3.Credentials.from_env())

    def object(self, key: str) -> s3.ObjectUrl:
        return s3.ObjectUrl(self.bucket, f"{self.prefix}/{key}" if self.prefix else key)

    def _path(self, key: str) -> str:  # what pyarrow's filesystem calls an object
        return f"{self.bucket}/{self.object(key).key}"

    def check(self, key: str) -> None:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"refusing to write {key!r}: it leaves {self.url}")

    def make(self) -> None:
        with self._writing(self.url):
            self.client.create_bucket(self.bucket)

    @contextlib.contextmanager
    def _writing(self, where: str) -> Iterator[None]:
        """Any failure of the store as an OutputError naming the object; a lost lease first."""
        for lease in self._leases:
            lease.check()
        try:
            yield
        except OSError as e:  # pyarrow's errors are OSErrors; so are s3.S3Error and sockets'
            raise OutputError(where, str(e).splitlines()[0]) from e

    def write(self, key: str, fill: Callable[[BinaryIO], object], fsync: bool = True) -> None:
        """Filled in memory, then one PUT (pyarrow: multipart above its part size, which S3 also
        shows only once complete): no partial object, ever. `fsync` means nothing here."""
        self.check(key)
        buffer = io.BytesIO()
        fill(buffer)
        with self._writing(self.where(key)), self.fs.open_output_stream(self._path(key)) as out:
            out.write(buffer.getbuffer())

    def create(self, key: str, data: bytes) -> bool:
        with self._writing(self.where(key)):
            return self.client.put(self.object(key), data, if_none_match=True).status == 200

    def read_bytes(self, key: str) -> bytes | None:
        with self._reading(key):
            reply = self.client.get(self.object(key))
        return reply.body if reply.status == 200 else None

    @contextlib.contextmanager
    def _reading(self, key: str | None = None) -> Iterator[None]:
        """Any failure of the store as an InputError naming the object read, or the folder."""
        try:
            yield
        except OSError as e:
            where = self.url if key is None else self.where(key)
            raise InputError(f"cannot read: {str(e).splitlines()[0]}", where) from e

    def list(self, pattern: str) -> list[str]:
        """One listing below the pattern's literal folders; recursive only if the pattern has
        folders of its own after them (`.journal/*/*.parquet`)."""
        from pyarrow import fs

        parts = pattern.split("/")
        fixed = 0
        while fixed < len(parts) - 1 and not re.search(r"[*?[]", parts[fixed]):
            fixed += 1
        base = "/".join(p for p in parts[:fixed] if p not in ("", "."))
        deep = len(parts) - fixed > 1
        start = self._path(base).rstrip("/")
        with self._reading():
            found = self.fs.get_file_info(
                fs.FileSelector(start, recursive=deep, allow_not_found=True)
            )
        keys = [i.path[len(self._path("")) :] for i in found if i.type == fs.FileType.File]
        wanted = [p for p in parts if p != "."]
        return sorted(k for k in keys if _matches(k.split("/"), wanted))

    def is_file(self, key: str) -> bool:
        from pyarrow import fs

        with self._reading(key):
            return self.fs.get_file_info(self._path(key)).type == fs.FileType.File

    def delete(self, key: str) -> None:
        with self._writing(self.where(key)):
            self.client.delete(self.object(key))

    def source(self, key: str) -> Any:
        with self._reading(key):
            return self.fs.open_input_file(self._path(key))

    @contextlib.contextmanager
    def lock(self, key: str, refusal: str) -> Iterator[None]:
        from openimages_pipe.download import lease

        held = lease.Lease(self.client, self.object(key), refusal, self.url)
        with self._writing(self.where(key)):
            held.acquire()
        self._leases.append(held)
        try:
            yield
        finally:
            self._leases.remove(held)
            held.release()


def _matches(key: list[str], pattern: list[str]) -> bool:
    return len(key) == len(pattern) and all(
        fnmatch.fnmatchcase(k, p) for k, p in zip(key, pattern, strict=True)
    )
