"""One exception family for every user-facing failure.

Every error a user can cause (bad input, bad options, unwritable output, cancellation) is an
:class:`SR4ZCTError` subclass carrying a one-line user message and a stable error code. The CLI prints
``message`` without a traceback and exits with ``exit_code``; the background worker reports ``code``.
"""

from __future__ import annotations


class SR4ZCTError(Exception):
    """Base class. ``message`` is a complete sentence meant for the user."""

    code = "error"
    exit_code = 1

    def __init__(self, message: str, *, detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail

    def __str__(self) -> str:
        return self.message


class InputError(SR4ZCTError):
    """The input path or data cannot be used (missing, empty, not an image, unreadable)."""

    code = "input"
    exit_code = 2


class GeometryError(InputError):
    """The series geometry is unusable or ambiguous (irregular spacing, tilt, single slice, ...)."""

    code = "geometry"
    exit_code = 3


class ParameterError(SR4ZCTError):
    """An option is invalid (thickness <= 0, target spacing not finer than the slice spacing, ...)."""

    code = "parameter"
    exit_code = 4


class OutputError(SR4ZCTError):
    """The output cannot be written (exists, unwritable, same as the input, disk full)."""

    code = "output"
    exit_code = 5


class ModelError(SR4ZCTError):
    """A saved model is corrupt or was trained for a different geometry."""

    code = "model"
    exit_code = 6


class ResourceError(SR4ZCTError):
    """Not enough memory (RAM or GPU) or the requested device is not available."""

    code = "resource"
    exit_code = 7


class Cancelled(SR4ZCTError):
    """The user cancelled the run. Nothing was written."""

    code = "cancelled"
    exit_code = 130
