"""`authenticate: - mtls`: the verified client certificate (mTLS listener) names the client.

    - mtls: {subjects: ["CN=partner-*"], sans: ["DNS:*.partners.example"]}

Patterns are shell globs (`fnmatch`, case-sensitive) over the whole string: the subject as
RFC 4514 (`CN=partner-a,O=Acme`), a SAN as `DNS:name`, `email:...`, `URI:...`, `IP:...`. A
certificate matching any pattern is accepted; its subject is the identity. The certificate was
verified by the TLS engine against the listener's `client_ca`; this step only chooses among
the clients that CA vouches for.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated

from msgspec import Meta

from outwork.filters import Identity, RequestContext
from outwork.filters.auth_method import Done, Failure, Method, Outcome
from outwork.filters.auth_method_spec import MethodOptions
from outwork.http.messages import RequestHead

Pattern = Annotated[str, Meta(min_length=1, max_length=1024)]
MAX_PATTERNS = 1024


class MtlsSpec(MethodOptions, kw_only=True):
    subjects: Annotated[list[Pattern], Meta(max_length=MAX_PATTERNS)] = []
    sans: Annotated[list[Pattern], Meta(max_length=MAX_PATTERNS)] = []

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.subjects and not self.sans:
            raise ValueError("mtls needs `subjects` or `sans` patterns (`CN=*` for any client)")


class MtlsMethod(Method):
    __slots__ = ("subjects", "sans")
    kind = "mtls"

    def __init__(self, spec: MtlsSpec) -> None:
        super().__init__(spec)
        self.subjects = tuple(spec.subjects)
        self.sans = tuple(spec.sans)

    def present(self, ctx: RequestContext, head: RequestHead) -> bool:
        return ctx.client_certificate is not None

    def verify(self, ctx: RequestContext, head: RequestHead, done: Done) -> Outcome:
        cert = ctx.client_certificate
        if cert is None:  # `present` said otherwise: never reached
            return Failure("no client certificate")
        if any(fnmatchcase(cert.subject, p) for p in self.subjects) or any(
            fnmatchcase(san, p) for san in cert.sans for p in self.sans
        ):
            return Identity("mtls", cert.subject)
        detail = {"subject": cert.subject, "fingerprint_sha256": cert.fingerprint_sha256}
        return Failure("certificate matches no pattern", detail)
