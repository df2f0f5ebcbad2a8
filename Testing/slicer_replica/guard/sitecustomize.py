"""Loaded by the replica's ``PythonSlicer``: imports of the replica venv's test tools fail, as in Slicer.

The replica venv holds pytest and PySide6 for the tests themselves; Slicer's Python has neither. A
process started through the launcher must not be able to lean on them (nor on anything listed here).
"""

import importlib.abc
import sys

NOT_IN_SLICER = frozenset(
    {
        "pytest",
        "_pytest",
        "pluggy",
        "iniconfig",
        "pygments",
        "PySide6",
        "shiboken6",
    }  # fmt: skip
    # psutil, tqdm, pylibjpeg and matplotlib are simply not installed in the replica venv (setup.sh checks):
    # ``importlib.util.find_spec`` must answer None for them, as in Slicer (torch probes some that way).
)


class _NotInSlicer(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in NOT_IN_SLICER:
            raise ModuleNotFoundError(
                f"No module named '{fullname}' (not bundled with 3D Slicer)", name=fullname
            )
        return None


sys.meta_path.insert(0, _NotInSlicer())
