"""Process limits a gateway needs: enough file descriptors for its connections."""

from __future__ import annotations

import resource

# Below this many open files a gateway runs out of descriptors long before it runs out of memory
# (each client connection takes one, each upstream connection another): worth a log line.
LOW_OPEN_FILES = 16384
# The soft limit asked for when the hard limit is unlimited (Linux caps it at fs.nr_open anyway).
UNLIMITED_TARGET = 1024 * 1024


def raise_open_files_limit() -> str | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit (service managers and shells often start
    a process with a soft limit of 1024, which caps a gateway at about a thousand connections).
    Returns a line to log when the limit stays low, else None. Workers forked afterwards
    inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep the soft limit we have; the line below says so when it is low
    if soft != resource.RLIM_INFINITY and soft < LOW_OPEN_FILES:
        return (
            f"open files limit is {soft} (hard limit {hard}): at most about {soft // 2} proxied "
            "connections per process; raise the hard limit (LimitNOFILE=, ulimit -Hn) for more"
        )
    return None
