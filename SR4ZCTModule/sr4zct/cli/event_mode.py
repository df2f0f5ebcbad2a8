"""``sr4zct enhance ... --events``: the enhancement as a background process speaking docs/events.md."""

from __future__ import annotations

import faulthandler
import os
import platform
import sys
import time
from pathlib import Path

from sr4zct import __version__
from sr4zct.errors import Cancelled, ResourceError, SR4ZCTError
from sr4zct.run.control import Interrupted, RunControl, exit_code_for_signal
from sr4zct.run.events import EventWriter, failed_event, make_event
from sr4zct.run.options import EnhanceOptions

__all__ = ["run_with_events"]

EXIT_CANCELLED = 130


def run_with_events(
    input_path: str, output_path: str, options: EnhanceOptions, *, control_file: str | None = None
) -> int:
    """Run :func:`~sr4zct.run.pipeline.enhance_file` reporting events on stdout; returns the exit code.

    Exactly one terminal event (``finished``, ``cancelled`` or ``failed``) ends the stream, whatever happens.
    """
    writer = EventWriter.take_stdout()
    faulthandler.enable(file=sys.stderr)  # a crash in native code leaves its traceback in the client's log
    control = RunControl(control_file, broken_pipe=lambda: writer.broken)
    t0 = time.monotonic()
    try:
        with control.signals():  # reads the control channel from here on, before torch is imported
            writer.emit(_started_event(input_path, output_path, options))
            from sr4zct.run.pipeline import enhance_file

            result = enhance_file(
                input_path, output_path, options, progress=writer.progress, should_stop=control.should_stop,
                should_finish=control.should_finish, on_preview=lambda fields: writer.emit(_preview_event(fields)),
            )  # fmt: skip
    except Interrupted as exc:
        code = exit_code_for_signal(exc.signal_name)
        how = f"({exc.reason})" if exc.reason else f"by {exc.signal_name}"
        writer.emit(_cancelled(f"Cancelled {how}; nothing was written.", code, t0))
        return code
    except Cancelled as exc:
        writer.emit(_cancelled(exc.message, EXIT_CANCELLED, t0))
        return EXIT_CANCELLED
    except MemoryError as exc:
        error = ResourceError("Not enough memory (RAM) for this volume; close other programs or choose the "
                              "'fast' preset.", detail=str(exc))  # fmt: skip
        writer.emit(failed_event(error))
        return error.exit_code
    except Exception as exc:
        event = failed_event(exc)
        writer.emit(event)
        return event["exit_code"] if isinstance(exc, SR4ZCTError) else 1
    writer.emit(_finished_event(result, output_path, options, t0))
    return 0


def _started_event(input_path: str, output_path: str, options: EnhanceOptions) -> dict:
    from sr4zct.system.devices import resolve_device

    device, description = resolve_device(options.device)
    return make_event(
        "started", device=str(device), device_description=description, sr4zct_version=__version__,
        python_version=platform.python_version(), torch_version=_torch_version(), pid=os.getpid(),
        input_path=str(Path(input_path).resolve()), output_path=str(Path(output_path).resolve()),
        options=options.to_dict(),
    )  # fmt: skip


def _preview_event(fields: dict) -> dict:
    return make_event("preview", **{k: v for k, v in fields.items() if not k.endswith("_hu")})


def _torch_version() -> str | None:
    torch = sys.modules.get("torch")
    return None if torch is None else str(torch.__version__)


def _cancelled(message: str, code: int, t0: float) -> dict:
    return make_event("cancelled", message=message, elapsed_s=time.monotonic() - t0, exit_code=code)


def _finished_event(result, output_path: str, options: EnhanceOptions, t0: float) -> dict:
    def resolved(path: str | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    return make_event(
        "finished", output_path=resolved(output_path), uncertainty_path=resolved(options.uncertainty_path),
        saved_model_path=resolved(options.save_model_path), device_description=result.device,
        parameters=result.parameters, timings_s=result.timings_s, warnings=result.warnings,
        output_shape=list(result.volume.array.shape), output_spacing_mm=list(result.volume.geometry.spacing_mm),
        elapsed_s=time.monotonic() - t0, exit_code=0,
    )  # fmt: skip
