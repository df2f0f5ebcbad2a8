"""What the readers and writers may open, and how folders are searched.

* Only regular files are opened: a named pipe would make ``open`` wait forever for a writer, and a device or
  socket is never an image. :func:`is_regular_file` and :func:`require_regular_file` check it with
  ``os.stat`` (which follows links and never opens anything) before any library reads a file.
* SimpleITK takes file names as UTF-8 text: a name that is not (POSIX file names are bytes; Python keeps
  undecodable bytes as lone surrogates) aborts the interpreter inside the library. :func:`check_utf8_name`
  refuses such a path first.
* :func:`walk_files` lists every file under a folder, following links to folders (a linked patient folder
  is searched, never skipped silently) with a loop guard: a folder already searched, by its real path, is
  not searched again.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from sr4zct.errors import InputError

__all__ = ["check_utf8_name", "is_regular_file", "is_utf8_name", "require_regular_file", "walk_files"]


def is_regular_file(path: str | os.PathLike) -> bool:
    """True for a regular file (also through a link); False for a pipe, socket, device, folder or a path
    that cannot be examined."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def require_regular_file(path: str | os.PathLike, what: str = "The input") -> None:
    """Raise :class:`InputError` unless ``path`` is an existing regular file.

    ``what`` starts the message (``"The manifest"``, ``"The data file"``).
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist.") from None
    except (OSError, ValueError) as exc:
        raise InputError(
            f"Cannot read {what.lower()} {path}: {getattr(exc, 'strerror', None) or exc}."
        ) from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{what} {path} is a folder, not a file.")
    if not stat.S_ISREG(mode):
        raise InputError(
            f"{what} {path} is not a regular file (a named pipe, socket or device); SR4ZCT reads only files."
        )


def is_utf8_name(path: str | os.PathLike) -> bool:
    """True when the whole path is valid Unicode text (no lone surrogates standing for undecodable bytes)."""
    try:
        os.fspath(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_utf8_name(path: str | os.PathLike, error: type = InputError) -> None:
    """Refuse a path whose name is not valid UTF-8 text before SimpleITK sees it (it aborts the interpreter).

    Raises
    ------
    InputError (or ``error``)
        Naming the path with its undecodable bytes escaped.
    """
    if is_utf8_name(path):
        return
    shown = os.fsencode(path).decode("utf-8", "backslashreplace")
    raise error(
        f"The path {shown} is not valid UTF-8 text (its name holds bytes of another encoding), which the image "
        "library cannot open; rename the file or folder with plain characters."
    )


def walk_files(
    root: str | os.PathLike,
    *,
    skip_dir: Callable[[Path], bool] | None = None,
    on_loop: Callable[[Path], None] | None = None,
    onerror: Callable[[OSError], None] | None = None,
) -> Iterator[Path]:
    """Every non-hidden file under ``root`` (names starting with ``.`` are left out), folders in sorted order.

    Links to folders are followed; a folder whose real path was searched already (a link loop, or two links
    to one folder) is skipped and reported to ``on_loop``. ``skip_dir(path)`` may leave a folder out (the
    batch's output folder). ``onerror`` receives the ``OSError`` of a folder that cannot be listed (default:
    ignored, as ``os.walk`` does). Files are yielded whatever their type: callers check
    :func:`is_regular_file`.
    """
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, onerror=onerror, followlinks=True):
        here = Path(folder)
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            if on_loop is not None:
                on_loop(here)
            continue
        seen.add(real)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not (skip_dir is not None and skip_dir(here / d))
        )
        for name in sorted(files):
            if not name.startswith("."):
                yield here / name
