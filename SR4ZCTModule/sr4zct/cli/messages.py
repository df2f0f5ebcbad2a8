"""Error messages in the words of the command line: the core names Python parameters (``thickness_mm``,
``overwrite=True``), the command line names its flags (``--thickness``, ``--overwrite``).

:func:`to_cli_words` rewrites a core message for the terminal:

* ``name=True`` becomes the flag (``overwrite=True`` -> ``--overwrite``);
* ``name=`` before a value becomes the flag and a space (``series_uid=UID`` -> ``--series UID``);
* a name with an underscore (``thickness_mm``, ``save_model_path``) becomes the flag wherever it stands as
  a whole word. Plain English words (``overwrite``, ``device``, ``preset``, ``network``, ...) are only
  rewritten in the two forms above, so prose such as "Unknown network" or "cannot overwrite" stays;
* a name that starts the message before its label in brackets (``seed (the random seed) must ...``, as the
  options' own checks word it) becomes the flag.

Names inside paths (``/data/model_path/x``), longer names (``sr4zct_slice_thickness_mm``) and flags
already present are left alone. The names and flags are the options'
(:class:`~sr4zct.run.options.EnhanceOptions`), plus the reader keywords in :data:`READER_FLAGS`.
"""

from __future__ import annotations

import re

from sr4zct.run.options import EnhanceOptions, flag_of

__all__ = ["API_TO_FLAG", "READER_FLAGS", "to_cli_words"]

#: Reader keywords that are not (yet) enhancement options.
READER_FLAGS = {"allow_detached_data": "--allow-detached-data"}
#: Python API parameter -> command-line flag.
API_TO_FLAG: dict[str, str] = {**{name: flag_of(name) for name in EnhanceOptions.names()}, **READER_FLAGS}

# Not after a word character, a path separator, a dot or a dash (paths, flags, dotted names); not before a
# word character or a path separator.
_BEFORE = r"(?<![\w/\\.\-])"
_AFTER = r"(?![\w/\\\-])"


def _pattern(name: str) -> re.Pattern[str]:
    forms = [rf"{re.escape(name)}=True{_AFTER}", rf"{re.escape(name)}=(?=\S)", rf"^{re.escape(name)}(?= \()"]
    if "_" in name:
        forms.append(rf"{re.escape(name)}{_AFTER}(?!=)")
    return re.compile(_BEFORE + "(?:" + "|".join(forms) + ")")


# longest first: ``save_model_path`` before ``model_path``
_PATTERNS = [(_pattern(name), API_TO_FLAG[name]) for name in sorted(API_TO_FLAG, key=len, reverse=True)]


def to_cli_words(message: str) -> str:
    """``message`` with the Python API's parameter names replaced by the command-line flags."""

    def replace(flag: str):
        def sub(match: re.Match[str]) -> str:
            return flag + " " if match.group(0).endswith("=") else flag

        return sub

    for pattern, flag in _PATTERNS:
        message = pattern.sub(replace(flag), message)
    return message
