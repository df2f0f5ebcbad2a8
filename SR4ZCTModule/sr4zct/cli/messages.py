"""Error messages in the words of the command line: the core names Python parameters (``thickness_mm``),
the command line names its flags (``--thickness``)."""

from __future__ import annotations

import re

from sr4zct.run.options import EnhanceOptions, flag_of

__all__ = ["to_cli_words"]

_NAMES = re.compile(
    r"(?<![\w-])(" + "|".join(sorted(EnhanceOptions.names(), key=len, reverse=True)) + r")(?![\w-])"
)


def to_cli_words(message: str) -> str:
    """``message`` with every option name replaced by its flag (``thickness_mm=`` becomes ``--thickness``)."""
    return _NAMES.sub(lambda m: flag_of(m.group(1)), message)
