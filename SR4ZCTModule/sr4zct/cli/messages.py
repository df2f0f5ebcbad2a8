"""Error messages in the words of the command line: the core names Python parameters (``thickness_mm``,
``overwrite=True``), the command line names its flags (``--thickness``, ``--overwrite``).

:func:`to_cli_words` rewrites a core message for the terminal:

* ``name=True`` becomes the flag (``overwrite=True`` -> ``--overwrite``);
* ``name=`` before a value becomes the flag and a space (``series_uid=UID`` -> ``--series UID``);
* a name with an underscore (``thickness_mm``, ``save_model_path``) becomes the flag wherever it stands as
  a whole word. Plain English words (``overwrite``, ``device``, ``preset``, ``network``, ...) are only
  rewritten in the two forms above, so prose such as "Unknown network" or "cannot overwrite" stays;
* a name that starts the message before its label in brackets (``seed (the random seed) must ...``, as the
  options' own checks word it) becomes the flag;
* a name the sentence places in Python (``thickness_mm in Python, --thickness MM on the command line``,
  ``allow_non_ct=True in Python``) stays.

Names inside paths (``/data/model_path/x``), longer names (``sr4zct_slice_thickness_mm``) and flags
already present are left alone. The names and flags are the options'
(:class:`~sr4zct.run.options.EnhanceOptions`), plus the reader keywords in :data:`READER_FLAGS`.

:func:`printable` makes text from files (DICOM descriptions, file names, messages that quote them) safe for a
terminal: control characters (escape sequences), bidirectional overrides and bytes of file names that are
not UTF-8 become visible escapes (``\x1b``, ``\u202e``, ``\udcff``). :func:`to_cli_words` returns printable
text on one line.

:func:`echo` prints a line that the stream may not be able to encode (a non-ASCII path on a Windows console in
cp1252): what it cannot encode is shown as an escape instead of failing a run that has already succeeded.
"""

from __future__ import annotations

import codecs
import re
import sys
from typing import TextIO

from sr4zct.run.options import EnhanceOptions, flag_of

__all__ = ["API_TO_FLAG", "READER_FLAGS", "echo", "printable", "to_cli_words"]

#: Reader keywords that are not (yet) enhancement options.
READER_FLAGS = {"allow_detached_data": "--allow-detached-data"}
#: Python API parameter -> command-line flag.
API_TO_FLAG: dict[str, str] = {**{name: flag_of(name) for name in EnhanceOptions.names()}, **READER_FLAGS}

# Not after a word character, a path separator, a dot or a dash (paths, flags, dotted names); not before a
# word character or a path separator.
_BEFORE = r"(?<![\w/\\.\-])"
_AFTER = r"(?![\w/\\\-])"


# A name (with its ``=value``) that the sentence itself places in Python ("thickness_mm in Python,
# --thickness MM on the command line") is the Python name on purpose.
_IN_PYTHON = r"(?!\S* in Python\b)"


def _pattern(name: str) -> re.Pattern[str]:
    named = re.escape(name) + _IN_PYTHON
    forms = [rf"{named}=True{_AFTER}", rf"{named}=(?=\S)", rf"^{re.escape(name)}(?= \()"]
    if "_" in name:
        forms.append(rf"{named}{_AFTER}(?!=)")
    return re.compile(_BEFORE + "(?:" + "|".join(forms) + ")")


# longest first: ``save_model_path`` before ``model_path``
_PATTERNS = [(_pattern(name), API_TO_FLAG[name]) for name in sorted(API_TO_FLAG, key=len, reverse=True)]


# C0 and C1 controls and DEL (escape sequences), Unicode format controls that reorder or hide text
# (bidirectional overrides and isolates, zero-width characters), line and paragraph separators, and lone
# surrogates (bytes of a file name that are not UTF-8).
_UNPRINTABLE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with every character a terminal would act on (escape sequences, bidirectional overrides,
    other control characters) or could not encode (lone surrogates) shown as an escape such as ``\x1b``;
    tabs stay, newlines too with ``keep_newlines`` (else ``\n`` is shown as ``\x0a``)."""
    text = str(text)
    out = _UNPRINTABLE.sub(_escape, text)
    return out if keep_newlines else out.replace("\n", "\\x0a")


def to_cli_words(message: str) -> str:
    """``message`` with the Python API's parameter names replaced by the command-line flags, made printable
    on one line (:func:`printable`: a line break in a quoted path or DICOM text is shown as ``\x0a``)."""

    def replace(flag: str):
        def sub(match: re.Match[str]) -> str:
            return flag + " " if match.group(0).endswith("=") else flag

        return sub

    for pattern, flag in _PATTERNS:
        message = pattern.sub(replace(flag), message)
    return printable(message)


def echo(text: str, file: TextIO | None = None) -> None:
    """``print(text, file=file)`` (default standard output), with the characters the stream's encoding cannot
    represent shown as escapes (``\u65e5``, ``\udcff``) instead of raising :class:`UnicodeEncodeError`."""
    stream = sys.stdout if file is None else file
    if stream is None:  # no console (pythonw) or a closed pipe
        return
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "ascii"
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        text = text.encode(encoding, errors="backslashreplace").decode(encoding)
    print(text, file=stream)
