"""outwork: a security-first API gateway."""

__version__ = "0.1.0"
