"""outwork: a security-first API gateway."""

# Before any other module of the package loads: the compiled modules or the pure-Python ones.
from outwork import native  # noqa: F401

__version__ = "0.1.0"
