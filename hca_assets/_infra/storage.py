"""The one layer between data files and an object store (``az://``, ``abfss://``, ``s3://``, ``gs://``).

With an object-store root the store is the system of record and stages compute on a local working copy:
a stage pulls the batch folders it reads, writes its outputs locally as on a laptop, and pushes them *before*
the Delta commit that lists them. Readers find files only through table rows, so a batch becomes visible
all at once, when its commit lands; a run that dies earlier leaves unlisted objects that the next run of
the batch overwrites. Files and Delta tables go through the same Rust client (obstore and deltalake both wrap
``object_store``), so both read the same credentials from the environment: ``AZURE_STORAGE_ACCOUNT_NAME`` +
``AZURE_STORAGE_ACCOUNT_KEY``, ``AZURE_STORAGE_USE_EMULATOR=true`` (Azurite), ``AWS_*`` for S3, and
``AZURE_STORAGE_CONNECTION_STRING``, which this module translates since ``object_store`` does not read it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from hca_assets._infra.files import atomic_write
from hca_assets.config import Settings, is_uri

__all__ = ["Store", "StoreError", "delta_options", "prune", "pull", "pull_file", "push"]

AZURE_SCHEMES = ("az", "abfs", "abfss", "azure", "adl")
# How long one request may keep being retried (object_store backs off exponentially on 429, 5xx and timeouts);
# then the operation fails with StoreError and the run fails before its commit.
RETRY_SECONDS = float(Settings.env_value("store_retry_seconds"))  # HCA_STORE_RETRY_SECONDS
MAX_RETRIES = 6
TRANSFERS = 16  # objects in flight per push or pull
T = TypeVar("T")


class StoreError(RuntimeError):
    """An object-store operation failed after its retries; the message names the operation and zone, never a path."""


def _azure_config() -> dict[str, str]:
    """Azure settings from ``AZURE_STORAGE_CONNECTION_STRING`` (account, key, endpoint; the emulator's short form)."""
    conn = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if not conn:
        emulator = os.environ.get("AZURE_STORAGE_USE_EMULATOR", "").lower() in ("1", "true")
        return {"allow_http": "true"} if emulator else {}
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        return {"use_emulator": "true", "allow_http": "true"}
    config = {"account_name": parts.get("AccountName", ""), "account_key": parts.get("AccountKey", "")}
    endpoint = urlsplit(parts.get("BlobEndpoint", ""))
    if endpoint.path.strip("/") and endpoint.path.strip("/") == config["account_name"]:
        # Azurite's form (the account in the path). object_store mis-addresses the Delta log under such an
        # `endpoint` (commit 2 reads as "Invalid table version: 1"); its emulator mode takes the URL from this variable
        os.environ["AZURITE_BLOB_STORAGE_URL"] = f"{endpoint.scheme}://{endpoint.netloc}"
        config |= {"use_emulator": "true", "allow_http": str(endpoint.scheme == "http").lower()}
    elif endpoint.netloc:
        config |= {"endpoint": parts["BlobEndpoint"], "allow_http": str(endpoint.scheme == "http").lower()}
    return {k: v for k, v in config.items() if v}


def _scheme(uri: str) -> str:
    return uri.split("://", 1)[0].lower()


def delta_options(uri: str) -> dict[str, str] | None:
    """deltalake ``storage_options`` for a table at ``uri``: translated credentials and bounded retries."""
    if not is_uri(uri):
        return None
    options = _azure_config() if _scheme(uri) in AZURE_SCHEMES else {}
    return {**options, "max_retries": str(MAX_RETRIES), "retry_timeout": f"{int(RETRY_SECONDS)}s",
            "timeout": f"{int(RETRY_SECONDS)}s"}


class Store:
    """Files under ``root`` (an object-store URI) addressed by paths relative to it, as the tables record them."""

    def __init__(self, root: str) -> None:
        from obstore.store import from_url  # imported here: local roots never load the client

        if not is_uri(root):
            raise ValueError(f"`root` must be an object-store URI, got a local path ({len(root)} characters)")
        self.root = root.rstrip("/")
        config = _azure_config() if _scheme(root) in AZURE_SCHEMES else {}
        client = {"timeout": timedelta(seconds=RETRY_SECONDS)}
        if config.pop("allow_http", "false") == "true":
            client["allow_http"] = True
        retry = {"max_retries": MAX_RETRIES, "retry_timeout": timedelta(seconds=RETRY_SECONDS),
                 "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=5), "base": 2}}
        self._store = from_url(self.root, config=config or None, client_options=client, retry_config=retry)

    def _call(self, what: str, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """``fn(*args)``, its obstore errors turned into :class:`StoreError` (their text names object paths, and
        file names under restricted/ may be PHI); a missing object raises FileNotFoundError without its path."""
        from obstore.exceptions import AlreadyExistsError, BaseError, NotFoundError

        try:
            return fn(*args, **kwargs)
        except NotFoundError:
            raise FileNotFoundError(f"no such object in the {_scheme(self.root)}:// store") from None
        except AlreadyExistsError:
            raise FileExistsError(f"object exists in the {_scheme(self.root)}:// store") from None
        except BaseError as exc:
            raise StoreError(f"object store {_scheme(self.root)}:// failed to {what} ({type(exc).__name__}: "
                             f"{_status(exc)}); retried for up to {RETRY_SECONDS:.0f} s") from None

    def read(self, rel: str) -> bytes | None:
        """The object's bytes; None when it does not exist."""
        import obstore as obs

        try:
            return bytes(self._call("read an object", lambda: obs.get(self._store, rel).bytes()))
        except FileNotFoundError:
            return None

    def write(self, rel: str, data: bytes, *, create: bool = False) -> bool:
        """Write one object (a single PUT: atomic). With ``create``, only if it does not exist yet: returns False if it did."""
        import obstore as obs

        try:
            self._call("write an object", obs.put, self._store, rel, data, mode="create" if create else "overwrite")
        except FileExistsError:
            return False
        return True

    def listing(self, prefix: str) -> dict[str, int]:
        """Relative path → size of every object under ``prefix``."""
        import obstore as obs

        def run() -> dict[str, int]:
            return {m["path"]: m["size"] for chunk in obs.list(self._store, prefix.strip("/") or None) for m in chunk}
        return self._call("list a folder", run)

    def push(self, local_root: Path, prefix: str) -> int:
        """Upload every file under ``local_root/prefix`` to the same relative paths; returns how many were sent.

        Files already there with the same size are skipped, so a repeated push costs one listing.
        """
        import obstore as obs

        base = Path(local_root)
        present = self.listing(prefix)
        todo = [p for p in _files(base / prefix) if present.get(p.relative_to(base).as_posix()) != p.stat().st_size]

        def one(path: Path) -> None:
            self._call("upload a file", obs.put, self._store, path.relative_to(base).as_posix(), path)
        _parallel(one, todo)
        return len(todo)

    def push_file(self, local_root: Path, rel: str) -> None:
        """Upload one file to the same relative path."""
        import obstore as obs

        self._call("upload a file", obs.put, self._store, rel, Path(local_root) / rel)

    def pull(self, prefix: str, local_root: Path) -> int:
        """Download the objects under ``prefix`` that the working copy lacks (or holds at another size)."""
        import obstore as obs

        base = Path(local_root)
        wanted = [(rel, size) for rel, size in self.listing(prefix).items()
                  if not (base / rel).is_file() or (base / rel).stat().st_size != size]

        def one(item: tuple[str, int]) -> None:
            target = base / item[0]
            target.parent.mkdir(parents=True, exist_ok=True)
            data = self._call("download a file", lambda: obs.get(self._store, item[0]).bytes())
            atomic_write(target, lambda tmp: tmp.write_bytes(bytes(data)))
        _parallel(one, wanted)
        return len(wanted)

    def remove(self, prefix: str, keep: set[str] = frozenset()) -> int:
        """Delete the objects under ``prefix`` not named in ``keep`` (files of an earlier publication)."""
        import obstore as obs

        stale = [rel for rel in self.listing(prefix) if rel not in keep]
        for start in range(0, len(stale), 256):
            self._call("delete objects", obs.delete, self._store, stale[start:start + 256])
        return len(stale)


def _files(folder: Path) -> Iterator[Path]:
    return (p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith("."))


def _parallel(fn: Callable[[T], object], items: list[T]) -> None:
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(TRANSFERS, len(items))) as pool:
        for _ in pool.map(fn, items):
            pass


def _status(exc: BaseException) -> str:
    """The HTTP status and reason of an object-store error, without the object's path."""
    import re

    text = str(exc)
    status = re.search(r"\b([1-5]\d\d) ([A-Za-z][A-Za-z ]+)", text)
    if status:
        return f"HTTP {status.group(1)} {status.group(2).strip()}"
    for hint in ("Connection refused", "timed out", "dns error", "Unauthenticated", "PermissionDenied"):
        if hint.lower() in text.lower():
            return hint
    return "no response"


@functools.cache
def _store(root: str) -> Store:
    return Store(root)


def _rel(settings: Settings, local: str | Path) -> str:
    return Path(local).resolve().relative_to(Path(settings.local_root).resolve()).as_posix()


def push(settings: Settings, *folders: str | Path) -> int:
    """Upload working-copy folders (or files) to the store, before the commit that lists them; 0 for a local root."""
    if not is_uri(settings.data_dir):
        return 0
    store, root, sent = _store(settings.data_dir), Path(settings.local_root), 0
    for folder in folders:
        if Path(folder).is_file():
            store.push_file(root, _rel(settings, folder))
            sent += 1
        elif Path(folder).is_dir():
            sent += store.push(root, _rel(settings, folder))
    return sent


def pull(settings: Settings, *folders: str | Path) -> int:
    """Bring store folders into the working copy (only what is missing there); 0 for a local root."""
    if not is_uri(settings.data_dir):
        return 0
    return sum(_store(settings.data_dir).pull(_rel(settings, f), Path(settings.local_root)) for f in folders)


def pull_file(settings: Settings, file: str | Path) -> bool:
    """Bring one file from the store into the working copy if it is there and missing locally; True if it exists now."""
    if is_uri(settings.data_dir) and not Path(file).is_file():
        data = _store(settings.data_dir).read(_rel(settings, file))
        if data is not None:
            Path(file).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(Path(file), lambda tmp: tmp.write_bytes(data))
    return Path(file).is_file()


def prune(settings: Settings, folder: str | Path) -> int:
    """Delete store objects under ``folder`` that the working copy no longer holds (an earlier publication's),
    after the commit that replaced them; 0 for a local root."""
    if not is_uri(settings.data_dir):
        return 0
    rel = _rel(settings, folder)
    keep = {p.relative_to(Path(settings.local_root).resolve()).as_posix() for p in _files(Path(folder).resolve())}
    return _store(settings.data_dir).remove(rel, keep)
