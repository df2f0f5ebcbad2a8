"""Atomic output: write under a temporary name beside the target, then rename.

A reader never sees a half-written output, a failure leaves nothing behind, and an existing output is only
replaced when the caller asked for it. Use :func:`atomic_output` for any file or folder the product writes::

    with atomic_output(path, overwrite=overwrite, inputs=[input_path]) as tmp:
        write_something(tmp)          # tmp keeps path's suffixes (".nii.gz" stays ".nii.gz")
    # here path exists, complete

For a folder (``directory=True``) the context yields an empty temporary folder created beside the target.

Several outputs of one run (the volume, its sidecar, the uncertainty map, the saved model) are moved into
place together: inside ``with staged_outputs():`` each :func:`atomic_output` leaves its complete temporary
in place and the block's end moves them all; an earlier output is first renamed aside and deleted only once
every new file is in place, and put back if any move fails. So a run that fails at any write leaves an
earlier result exactly as it was.

An output path that is a symbolic link is refused (never followed: its target would be replaced), and
``overwrite`` replaces an earlier output only with the same kind of output (``content``: an enhanced volume
by an enhanced volume, never an uncertainty map, a preview or a model file by another kind).

Temporary names are ``.<stem>.sr4zct-tmp-<host>-<pid>-<random><suffix>`` (``<host>``: 8 hex digits of a hash
of the host name). A writer killed with SIGKILL cannot clean up; the next :func:`atomic_output` for the same
target removes such leftovers of that target whose writer process no longer exists on this host (a live
writer's, another host's and unrecognised files are kept).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from sr4zct.errors import OutputError
from sr4zct.system import pid_exists

_TMP_MARK = ".sr4zct-tmp-"


def _suffixes(name: str) -> str:
    """The suffix part of a file name that writers look at (``.nii.gz``, ``.nrrd``)."""
    lower = name.lower()
    for double in (".nii.gz", ".tar.gz"):
        if lower.endswith(double):
            return name[-len(double) :]
    return Path(name).suffix


def _host_tag() -> str:
    """8 hex digits identifying this host in temporary names (host names may hold any character)."""
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _split_name(name: str) -> tuple[str, str]:
    suffix = _suffixes(name)
    return (name[: len(name) - len(suffix)] if suffix else name), suffix


def temporary_name(path: str | os.PathLike) -> Path:
    """A unique hidden name in ``path``'s folder that keeps its suffixes and names its writer:
    ``.<stem>.sr4zct-tmp-<host>-<pid>-<random><suffix>``."""
    path = Path(path)
    stem, suffix = _split_name(path.name)
    return path.with_name(f".{stem}{_TMP_MARK}{_host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:12]}{suffix}")


def remove_stale_temporaries(path: str | os.PathLike, extra_suffixes: Iterable[str] = ()) -> list[Path]:
    """Remove temporaries of ``path`` (see :func:`temporary_name`, and their ``extra_suffixes`` sidecars)
    left in its folder by writers on this host whose process no longer exists; returns what was removed.

    Temporaries of other targets, of live processes, of other hosts (a shared folder) and names that do
    not follow the pattern are kept. Never raises for file-system errors.
    """
    path = Path(path)
    stem, suffix = _split_name(path.name)
    suffixes = "|".join(re.escape(s) for s in sorted({suffix, *extra_suffixes}, key=len, reverse=True))
    pattern = re.compile(
        rf"\.{re.escape(stem)}{re.escape(_TMP_MARK)}(?P<host>[0-9a-f]{{8}})-(?P<pid>[0-9]{{1,10}})-[0-9a-f]{{12}}"
        rf"(?:{suffixes})"
    )
    host = _host_tag()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or match["host"] != host or pid_exists(int(match["pid"])):
            continue
        stale = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(stale)
            else:
                stale.unlink()
        except OSError:
            continue
        removed.append(stale)
    return removed


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
    except ValueError:
        return False
    return True


def _is_empty_dir(path: Path) -> bool:
    return path.is_dir() and not any(path.iterdir())


def check_output_path(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    directory: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    content: str | None = None,
) -> Path:
    """Validate an output path before any work is done; returns it resolved (its own name is never a link).

    ``content`` is the kind of output to be written (:data:`sr4zct.io.ownership.CONTENTS`); with
    ``overwrite`` an existing SR4ZCT output of another kind is refused.

    Raises
    ------
    OutputError
        The output is one of ``inputs``, lies inside an input folder, contains an input, exists and
        ``overwrite`` is False (an empty folder counts as free for ``directory=True``), exists and was not
        written by SR4ZCT (:func:`check_replaceable`; checked even with ``overwrite``), is a folder where a
        file is expected (or the reverse), is a symbolic link, is an earlier output of another kind than
        ``content``, or its parent cannot be created.
    """
    target = unfollowed_path(path)
    for item in inputs:
        if item is not None:
            _check_apart_from_input(target, Path(item).expanduser().resolve())
    if target.exists():
        _check_existing_output(target, overwrite=overwrite, directory=directory, content=content)
    _check_parent_writable(target)
    return target


def unfollowed_path(path: str | os.PathLike) -> Path:
    """``path`` made absolute with its folder resolved but its own name kept; a symbolic link there is
    refused (following it would write over the link's target, wherever that is)."""
    absolute = Path(os.path.abspath(Path(path).expanduser()))
    if absolute.is_symlink():
        raise OutputError(
            f"The output {absolute} is a symbolic link; SR4ZCT never writes through a link (its target would be "
            "replaced). Give the real path, or remove the link."
        )
    if absolute.name in ("", ".", ".."):
        return absolute.resolve()
    return absolute.parent.resolve() / absolute.name


def _check_apart_from_input(target: Path, source: Path) -> None:
    """Refuse an output that is the input, lies inside the input folder or contains the input."""
    if target == source or _same_file(target, source):
        raise OutputError(f"The output {target} is the input; choose another output path.")
    if source.is_dir() and _is_within(target, source):
        raise OutputError(
            f"The output {target} is inside the input folder {source}; write it somewhere else "
            "(a derived series inside the input folder would be read back as part of the input)."
        )
    if _is_within(source, target):
        raise OutputError(f"The output {target} contains the input {source}; choose another output path.")


def _same_file(a: Path, b: Path) -> bool:
    """True when both exist and are one file (another spelling on a case-insensitive disk, a hard link)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def _check_existing_output(
    target: Path, *, overwrite: bool, directory: bool, content: str | None = None
) -> None:
    """Refuse an existing output of the wrong type, one without ``overwrite`` (an empty folder is free for
    a folder output) and, with ``overwrite``, one SR4ZCT did not write or of another ``content``."""
    if directory:
        if not target.is_dir():
            raise OutputError(f"The output {target} exists and is a file, not a folder.")
        if not _is_empty_dir(target) and not overwrite:
            raise OutputError(
                f"The output folder {target} exists and is not empty; use overwrite=True to replace it."
            )
    else:
        if target.is_dir():
            raise OutputError(f"The output {target} is a folder; give a file name.")
        if not overwrite:
            raise OutputError(f"The output {target} exists; use overwrite=True to replace it.")
    if overwrite and not _is_empty_dir(target):
        check_replaceable(target, content)


def _check_parent_writable(target: Path) -> None:
    """Create the output's parent folder if needed and check that files can be created in it."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot create the output folder {target.parent}: {exc.strerror or exc}.") from exc
    if not os.access(target.parent, os.W_OK):
        raise OutputError(f"The output folder {target.parent} is not writable.")
    _probe_writable(target.parent)


def check_replaceable(target: str | os.PathLike, content: str | None = None) -> None:
    """Refuse to replace an existing path that SR4ZCT did not write (:mod:`sr4zct.io.ownership`), or (with
    ``content``) an SR4ZCT output of another kind.

    Raises
    ------
    OutputError
        Saying what the path is not, and that ``overwrite`` replaces only SR4ZCT's own outputs of the same
        kind.
    """
    from sr4zct.io.ownership import CONTENTS, foreign_reason, sr4zct_content

    reason = foreign_reason(target)
    if reason is not None:
        raise OutputError(
            f"Refusing to replace {target}: {reason}, so it is not a previous output of SR4ZCT (overwrite=True "
            "replaces only files and folders SR4ZCT wrote); remove it yourself or choose another output path."
        )
    existing = sr4zct_content(target) if content is not None else None
    if existing is not None and existing != content:
        raise OutputError(
            f"Refusing to replace {target}: it is {CONTENTS[existing]} SR4ZCT wrote earlier and this run writes "
            f"{CONTENTS.get(content, content)} (overwrite=True replaces an output only with the same kind of "
            "output); choose another output path."
        )


def _probe_writable(folder: Path) -> None:
    """Create and delete a tiny file in ``folder``: ``os.access`` misses read-only mounts for root, ACLs,
    pseudo file systems and full disks that cannot even create an entry."""
    probe = folder / f".sr4zct-probe-{uuid.uuid4().hex[:12]}"
    created = False
    try:
        with open(probe, "xb") as f:
            created = True
            f.write(b"0")
    except OSError as exc:
        raise OutputError(
            f"The output folder {folder} is not writable ({exc.strerror or exc}); choose another output path."
        ) from exc
    finally:
        if created:  # never a file of that name that was there before
            with contextlib.suppress(OSError):
                probe.unlink()


def check_finite_output(array, target: str | os.PathLike) -> None:
    """The final guard of every writer: a volume with NaN or Inf voxels is never written.

    Raises
    ------
    OutputError
        Naming the count of NaN and infinite voxels.
    """
    import numpy as np

    a = np.asarray(array)
    if a.dtype.kind not in "fc":
        return
    n_nan = n_inf = 0
    for plane in a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(1, -1):
        bad = ~np.isfinite(plane)
        if bad.any():
            nan = int(np.isnan(plane).sum())
            n_nan += nan
            n_inf += int(bad.sum()) - nan
    if n_nan or n_inf:
        raise OutputError(
            f"Refusing to write {target}: the volume has {n_nan} NaN and {n_inf} infinite voxel(s), which no "
            "reader could use; nothing was written."
        )


def disk_full_or(target: Path, folder: Path, needed_bytes: int, reason: str) -> OutputError:
    """The documented disk-full error when ``folder`` has less than ``needed_bytes`` free (or the reason
    says so), else ``Cannot write <target>: <reason>``. For writers that do not raise ``OSError``
    (SimpleITK's raise RuntimeError with ITK's text; its NIfTI writer may not raise at all)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if "no space left" in reason.lower() or (free is not None and free < needed_bytes):
        return OutputError(f"The disk is full while writing {target}; nothing was written.")
    return OutputError(f"Cannot write {target}: {reason}; nothing was written.")


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


def _output_error(target: Path, exc: OSError) -> OutputError:
    if exc.errno == errno.ENOSPC:
        return OutputError(f"The disk is full while writing {target}; nothing was written.")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"No permission to write {target}; nothing was written.")
    return OutputError(f"Cannot write {target}: {exc.strerror or exc}; nothing was written.")


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    directory: bool = False,
    inputs: Iterable[str | os.PathLike | None] = (),
    extra_suffixes: Iterable[str] = (),
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place, on failure delete it.

    Parameters
    ----------
    path : final output file or folder.
    overwrite : replace an existing output (a file by ``os.replace``; a folder by renaming the old one
        aside, renaming the new one in, then deleting the old one).
    directory : the output is a folder; the yielded temporary folder is created empty.
    inputs : paths the output must not equal, lie inside or contain (see :func:`check_output_path`).
    extra_suffixes : sidecar files the writer puts next to the temporary file, named by replacing the
        temporary path's suffix (e.g. ``".json"`` for a NIfTI sidecar); they are moved and cleaned up too.

    Before writing, temporaries of the same target left by killed writers on this host are removed
    (:func:`remove_stale_temporaries`).

    Raises
    ------
    OutputError
        From :func:`check_output_path`, or when writing fails (disk full, permissions); nothing partial
        remains. Other exceptions raised inside the block propagate after cleanup.
    """
    target = check_output_path(path, overwrite=overwrite, directory=directory, inputs=inputs)
    extra_suffixes = tuple(extra_suffixes)
    remove_stale_temporaries(target, extra_suffixes)
    tmp = temporary_name(target)
    sidecars = [(_sidecar(tmp, s), _sidecar(target, s)) for s in extra_suffixes]
    if directory:
        try:
            tmp.mkdir()
        except OSError as exc:  # a failed mkdir made nothing to remove (and must not remove what is there)
            raise _output_error(target, exc) from exc
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"Nothing was written to {target}.")
    except OSError as exc:
        _remove_all([tmp, *(side for side, _ in sidecars)])
        raise _output_error(target, exc) from exc
    except BaseException:
        _remove_all([tmp, *(side for side, _ in sidecars)])
        raise
    moves = [(side, final) for side, final in sidecars if side.exists()] + [(tmp, target)]
    staging = _STAGING.get()
    if staging is not None:
        staging.extend(moves)  # moved into place with the run's other outputs (staged_outputs)
    else:
        commit_moves(moves)


def _remove_all(paths: Iterable[Path]) -> None:
    for path in paths:
        _remove(path)


class StagedOutputs:
    """The complete temporaries of one run's outputs and where each goes; see :func:`staged_outputs`."""

    def __init__(self) -> None:
        self.moves: list[tuple[Path, Path]] = []

    def add(self, new: str | os.PathLike, final: str | os.PathLike) -> None:
        """Move the complete file or folder ``new`` to ``final`` with the others."""
        self.moves.append((Path(new), Path(final)))

    def extend(self, moves: Iterable[tuple[Path, Path]]) -> None:
        self.moves.extend(moves)

    def discard(self) -> None:
        _remove_all(new for new, _ in self.moves)
        self.moves.clear()


_STAGING: contextvars.ContextVar[StagedOutputs | None] = contextvars.ContextVar(
    "sr4zct_staging", default=None
)


@contextlib.contextmanager
def staged_outputs() -> Iterator[StagedOutputs]:
    """Every :func:`atomic_output` inside the block is moved into place only at its end, all together
    (:func:`commit_moves`); an exception inside the block removes every temporary and leaves every earlier
    output as it was. ``add`` stages other complete files (a saved model)."""
    staging = StagedOutputs()
    token = _STAGING.set(staging)
    try:
        yield staging
    except BaseException:
        staging.discard()
        raise
    finally:
        _STAGING.reset(token)
    try:
        commit_moves(staging.moves)
    finally:
        staging.moves.clear()


def commit_moves(moves: list[tuple[Path, Path]]) -> None:
    """Move each complete temporary ``new`` to its ``final`` path, all or none.

    One file replaces its final path with a single ``os.replace`` (atomic). Several (or a folder): every
    existing final path is first kept aside under ``.<name>.sr4zct-old-<random>`` (a hard link, so the file
    stays in place; a folder, or a file where links are not possible, is renamed), then the new ones are
    moved in; only then are the old ones deleted. If any step fails, the new ones already moved are removed
    and the old ones put back, and the remaining temporaries are removed. A hard kill in between can leave
    an old output under its aside name, never delete it.

    Raises
    ------
    OutputError
        A move failed (disk, permissions); every earlier output is as it was.
    """
    if len(moves) == 1 and not moves[0][0].is_dir():
        new, final = moves[0]
        try:
            os.replace(new, final)
        except OSError as exc:
            _remove(new)
            raise _output_error(final, exc) from exc
        return
    asides: dict[Path, tuple[Path, bool]] = {}  # final -> (its old version's aside name, renamed)
    placed: list[Path] = []
    try:
        for _, final in moves:
            if os.path.lexists(final):
                asides[final] = _keep_aside(final)
        for new, final in moves:
            os.replace(new, final)
            placed.append(final)
    except BaseException as exc:
        _roll_back(moves, placed, asides)
        if isinstance(exc, OSError):
            raise _output_error(
                moves[len(placed)][1] if len(placed) < len(moves) else moves[-1][1], exc
            ) from exc
        raise
    _remove_all(aside for aside, _ in asides.values())


def _keep_aside(final: Path) -> tuple[Path, bool]:
    """Keep ``final``'s present version under a free aside name: a hard link for a file (it stays where it
    is), else a rename. Returns the aside name and whether ``final`` was renamed away."""
    aside = _aside_name(final)
    if not final.is_dir() and not final.is_symlink():
        try:
            os.link(final, aside)
            return aside, False
        except OSError:
            pass  # no hard links here (FAT, some network shares): rename instead
    os.replace(final, aside)
    return aside, True


def _aside_name(final: Path) -> Path:
    """A free name beside ``final`` to keep its old version while the new one moves in (never a name that
    is taken: ``os.replace`` would replace what is there)."""
    for _ in range(8):
        aside = final.with_name(f".{final.name}.sr4zct-old-{uuid.uuid4().hex[:12]}")
        if not os.path.lexists(aside):
            return aside
    raise OSError(errno.EEXIST, "no free name to keep the earlier output aside", str(final))


def _roll_back(
    moves: list[tuple[Path, Path]], placed: list[Path], asides: dict[Path, tuple[Path, bool]]
) -> None:
    """Undo a failed :func:`commit_moves`: the old versions back in place, the new ones removed."""
    for final in reversed(placed):
        if final not in asides:
            _remove(final)  # there was nothing before: the new one goes
    for final, (aside, renamed) in asides.items():
        with contextlib.suppress(OSError):
            if renamed or final in placed:
                if final.is_dir() and not final.is_symlink() and final in placed:
                    _remove(final)  # a folder cannot be replaced by os.replace while it holds files
                os.replace(aside, final)
            else:
                aside.unlink()  # a hard link of a file that was never touched
    _remove_all(new for new, _ in moves)


def _sidecar(path: Path, suffix: str) -> Path:
    own = _suffixes(path.name)
    base = path.name[: len(path.name) - len(own)] if own else path.name
    return path.with_name(base + suffix)


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """Write a small text file (JSON, a report) atomically; returns the resolved path."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path).expanduser().resolve()
