"""Every policy step, imported in the order a chain runs them (`filters.CHAIN_ORDER`, which the
registry keeps whatever module is imported first).

Whatever order a policy writes its steps in, they run in this one, which is the order their
checks make sense in: who may connect at all (access), then answers that need no credential
(headers: CORS preflights), who the client is (authenticate), what it may do (authorize), how
often (rate_limit), and only then what it sent (threat_protection, waf), the costly checks that
an anonymous flood must not reach. A step module registers itself when imported.
"""

from __future__ import annotations

# The order of these lines is the chain order: not sorted.
# isort: off
import outwork.filters.access  # noqa: F401
import outwork.filters.headers  # noqa: F401
import outwork.filters.authenticate  # noqa: F401
import outwork.filters.authorize  # noqa: F401
# isort: on
