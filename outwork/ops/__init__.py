"""Operator jobs behind `outwork keys`, `outwork certs` and `outwork ca`: one module per job.

They work on files, tokens and certificates, never on a running gateway; each refusal is an
`OpsError` whose message is one line for the operator (the command prints it and exits 2).
"""


class OpsError(Exception):
    """A refusal: bad input, wrong secret, missing token. Nothing was written."""
