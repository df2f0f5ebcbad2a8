"""Run the SR4ZCT module's self-test inside 3D Slicer and exit with its status.

Usage (see README.md next to this file)::

    Slicer --no-splash --additional-module-paths SR4ZCTModule --python-script Testing/Slicer/run_selftest.py
"""

import sys
import traceback
import unittest

import slicer

status = 1
try:
    import SR4ZCT

    # As ctest loads it (slicer.testing.runUnitTest): the test_* methods, each skipping itself without PyTorch.
    suite = unittest.TestLoader().loadTestsFromTestCase(SR4ZCT.SR4ZCTTest)
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    status = 0 if result.wasSuccessful() else 1
except Exception:
    traceback.print_exc()
finally:
    slicer.util.exit(status)
