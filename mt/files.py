"""Writing so that a kill at any moment leaves the old version or the new one, never half of
one, and never removing what mt did not write.

A file is written beside its final name, flushed and fsynced, then renamed over it (and its
folder fsynced, so the rename itself survives a power cut). A directory that mt writes as a
whole (a model, a checkpoint, an export, an average, a report folder) holds ``manifest.json``,
written last: its kind, mt's version and each file's size and SHA-256. A directory with a
manifest is complete; its checksums prove that no file was cut short or changed since; and
it is the only kind of directory that mt ever replaces or removes.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from mt import __version__
from mt.errors import MTError, WriteError, write_failure

MANIFEST = "manifest.json"
BLOCK = 8 * 2**20


def fsync_path(path: Path) -> None:
    """Flushes a file's or a folder's entry to the disk (a folder: the names in it)."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Every file under ``folder``, then every folder, deepest first."""
    folders = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            fsync_path(Path(root) / name)
        folders.append(Path(root))
    for path in reversed(folders):
        fsync_path(path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:40] or "host"


def temp_name(path: Path) -> Path:
    """A name beside ``path`` for its next version: hidden, and this process's own (its host
    and PID: a folder may be shared between machines)."""
    return path.with_name(f".{path.name}.mt-tmp-{HOST}-{os.getpid()}")


def clear_stale_temps(path: Path) -> None:
    """Removes what a killed process left half-written beside ``path`` (``temp_name``s of this
    host whose process is gone); another host's, a live process's, and anything named
    otherwise stay."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.mt-tmp-{HOST}-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        except PermissionError:
            pass  # alive, another user's


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s new content to (by any means: a library's
    ``savefig``, ``save_file``, ``gzip.open``); renamed over ``path`` once the block ends
    without an error, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale_temps(path)
    tmp = temp_name(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def fresh_temp_dir(path: Path) -> Path:
    """An empty folder beside ``path``, this process's own, to fill before it is renamed to
    ``path`` (what a killed process left there first cleared)."""
    clear_stale_temps(path)
    tmp = temp_name(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def _umask() -> int:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it, and back
    os.umask(mask)
    return mask


def as_user_file(path: str | Path) -> None:
    """Gives a file that a library wrote private (safetensors writes 0600) the permissions of a
    file the user creates (0666 less the umask), so a web server running as another user can
    read a model the user trained or exported."""
    os.chmod(path, 0o666 & ~_umask())


# -- files a command writes for the user --------------------------------------------------


def is_stream(path: Path) -> bool:
    """A device, a pipe or a descriptor (``/dev/stdout``, ``/proc/self/fd/3``, even one that
    leads to a file): written as it is, never replaced by a file of that name."""
    return (path.exists() and not path.is_file()) or str(path.absolute()).startswith(("/dev/", "/proc/"))


@contextlib.contextmanager
def output_path(path: str | Path) -> Iterator[Path]:
    """Where to write the new content of the file ``path`` (by any means: ``savefig``, a zip):
    a temporary name beside it, renamed over it once the block ends without an error
    (``mt.files.atomic_path``), so a kill or a full disk leaves the previous version whole and
    never half a file. A symbolic link is written through (the file it names is replaced, the
    link kept); a replaced file keeps its permissions; a device, a pipe or a descriptor
    (``/dev/stdout``, ``is_stream``) is written as it is. A failed write (a full disk, a read-only folder) is one line."""
    given = Path(path)
    if given.is_dir():
        raise MTError(f"{given} is a folder: name a file to write")
    if is_stream(given):
        yield given
        return
    target = given.resolve() if given.is_symlink() else given
    try:
        mode = stat.S_IMODE(target.stat().st_mode) if target.is_file() else None
        with atomic_path(target) as tmp:
            yield tmp
            if mode is not None and tmp.exists():
                os.chmod(tmp, mode)
    except OSError as err:
        why = write_failure(err)
        if why is None:
            raise
        kept = "the previous version is kept" if target.exists() else "nothing was written"
        raise WriteError(f"could not write {given} ({why}); {kept}") from err


@contextlib.contextmanager
def output_file(path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO[Any]]:
    """``open(path, mode)`` for a file a command writes, whole or not at all (``output_path``)."""
    with output_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding,
                                        newline=None if "b" in mode else newline) as handle:
        yield handle


def write_text_file(path: str | Path, text: str) -> Path:
    """``text`` (UTF-8) as the whole content of ``path``, or the previous version kept."""
    with output_file(path) as handle:
        handle.write(text)
    return Path(path)


# -- directories mt writes as a whole ---------------------------------------------------


def write_manifest(folder: Path, kind: str, extra: dict | None = None, files: list[str] | None = None) -> None:
    """Seals ``folder``: fsyncs its files, then writes the manifest (kind, sizes, checksums) of
    every file under it, or of ``files`` (names relative to it) where given."""
    if files is None:
        listed = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
        fsync_tree(folder)
    else:
        listed = sorted(folder / name for name in files)
        for path in listed:
            fsync_path(path)
    manifest = {"kind": kind, "mt": __version__, "written": time.strftime("%Y-%m-%d %H:%M:%S"), **(extra or {}),
                "files": {p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
                          for p in listed}}
    with open(folder / MANIFEST, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(manifest, indent=1) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    fsync_path(folder)


def read_manifest(folder: Path) -> dict | None:
    """The manifest of ``folder``, None where there is none or it is not one mt wrote."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str) or not isinstance(data.get("files"), dict):
        return None
    for name, entry in data["files"].items():  # plain names inside the folder, never a path out of it
        parts = Path(name).parts
        if (not parts or Path(name).is_absolute() or ".." in parts or not isinstance(entry, dict)
                or not isinstance(entry.get("size"), int) or not isinstance(entry.get("sha256"), str)):
            return None
    return data


def unlisted(folder: Path) -> list[str]:
    """Files in a sealed ``folder`` that its manifest does not list (a user's notes put in it
    since), hidden names aside; none for a folder without a manifest."""
    manifest = read_manifest(folder)
    if manifest is None:
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != MANIFEST
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                  and p.relative_to(folder).as_posix() not in manifest["files"])


def verify_manifest(folder: Path, fix: str, required: tuple[str, ...] = ()) -> dict | None:
    """The manifest, after checking every file it lists (``required`` among them) against its
    size and checksum; a folder without one (written by an mt before manifests) is None, and
    trusted as before. A damaged, missing or changed file is one line naming it and ``fix``."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    manifest = read_manifest(folder)
    if manifest is None:
        raise MTError(f"{path} is damaged: {fix}")
    for name in required:
        if name not in manifest["files"]:
            raise MTError(f"{path} is damaged (it does not list {name}): {fix}")
    for name, want in manifest["files"].items():
        file = folder / name
        if not file.is_file():
            raise MTError(f"{file} is missing (the manifest lists it): {fix}")
        size = file.stat().st_size
        if size != want.get("size"):
            raise MTError(f"{file} is damaged: {size} bytes where {want.get('size')} were written; {fix}")
        if sha256_file(file) != want.get("sha256"):
            raise MTError(f"{file} is not the file mt wrote (damaged, or edited since: its checksum differs); {fix} "
                          f"(edited on purpose? delete {path} to load the folder unchecked)")
    return manifest


def output_kind(folder: Path, legacy: Callable[[Path], str | None] | None = None) -> str | None:
    """What mt wrote ``folder`` as (its manifest's kind), or what ``legacy`` recognises in a
    folder written before manifests; None for anything else."""
    manifest = read_manifest(folder)
    if manifest is not None:
        return manifest["kind"]
    return legacy(folder) if legacy is not None else None


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def remove_own(path: Path, kind: str | set[str] | None = None,
               legacy: Callable[[Path], str | None] | None = None) -> None:
    """Removes the folder ``path`` only if it is empty, or an mt output (of ``kind``, where
    given) holding nothing its manifest does not list; anything else is one line: mt never
    deletes what it did not write."""
    if not path.exists() and not path.is_symlink():
        return
    kinds = {kind} if isinstance(kind, str) else kind
    if path.is_symlink() or not path.is_dir():
        raise MTError(f"{path} is in the way and is not a folder mt wrote: move it elsewhere (mt never deletes what "
                      "it did not write)")
    if not _is_empty_dir(path):
        found = output_kind(path, legacy)
        extra = unlisted(path)
        if found is None or (kinds is not None and found not in kinds) or extra:
            what = f"holds files mt did not write ({', '.join(extra[:3])})" if found is not None and extra \
                else f"was not written by mt as {' or '.join(sorted(kinds or {'an output'}))}"
            raise MTError(f"{path} is in the way and {what}: move it elsewhere (mt never deletes what it did not "
                          "write)")
    shutil.rmtree(path, onerror=_gone_is_fine)


def _gone_is_fine(_function: Callable, _path: str, info: tuple) -> None:
    """``rmtree``: another process removed it first (two writers of one output at once)."""
    if not isinstance(info[1], FileNotFoundError):
        raise info[1]


def check_out_dir(out: Path, kind: str, force: bool, replaceable: set[str], sources: tuple[Path, ...] = (),
                  legacy: Callable[[Path], str | None] | None = None, flag: str = "--out", whole: bool = True) -> None:
    """Whether a command may write ``kind`` to ``out``: a new or empty folder, or an earlier output
    of the same kind; with ``force``, any output of ``replaceable`` kinds too. Never a folder mt
    did not write, a file, a link, or a source the command reads (nor a folder holding one)."""
    if out.is_symlink():
        raise MTError(f"{flag} {out} is a symbolic link: name the folder itself (mt writes a folder in place of the "
                      "name it is given)")
    resolved = out.resolve()
    for source in sources:
        src = source.resolve()
        if resolved == src or src.is_relative_to(resolved) or resolved.is_relative_to(src):
            raise MTError(f"{flag} {out} is {'the' if resolved == src else 'inside or around the'} model it reads "
                          f"({source}): choose another folder")
    if not out.exists() or _is_empty_dir(out):
        return
    if not out.is_dir():
        raise MTError(f"{flag} {out} is a file: name a folder to write the {kind} to")
    found = output_kind(out, legacy)
    extra = unlisted(out) if found is not None and whole else []  # a folder replaced whole takes no passengers
    if extra and (found == kind or found in replaceable):
        raise MTError(f"{flag} {out} holds {_a(found)} and files mt did not write ({', '.join(extra[:3])}): move them "
                      "out, or choose another folder")
    if found == kind:
        return
    if found is not None and found in replaceable:
        if force:
            return
        raise MTError(f"{flag} {out} holds {_a(found)}, not {_a(kind)}: pass --force to replace it, or choose "
                      "another folder")
    names = sorted(p.name for p in out.iterdir())
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    what = f"holds {_a(found)}, which --force never replaces" if found is not None \
        else f"is not empty ({shown}) and mt did not write it"
    raise MTError(f"{flag} {out} {what}: choose a new or empty folder (--force replaces only an earlier "
                  f"{' or '.join(sorted(replaceable | {kind}))})")


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"
