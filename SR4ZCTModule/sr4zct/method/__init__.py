"""The method's steps (docs/method.md): acquisition model, networks, training, inference, fusion.

Importing this package is cheap (no torch): it holds the method's vocabulary that the options
(:mod:`sr4zct.run.options`) offer before torch loads.
"""

__all__ = ["PROFILES"]

#: slice sensitivity profiles of the acquisition model (docs/method.md, section 2)
PROFILES = ("box", "gaussian")
