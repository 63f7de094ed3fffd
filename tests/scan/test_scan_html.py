"""The HTML report: self-contained (no script, nothing from the network), readable in a
browser: headless Chromium renders it, and the screenshot shows the verdict colours."""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from pathlib import Path

from tests.conftest import require_tool
from tests.tls.test_chromium import CHROMIUM_FLAGS

from .conftest import run_scan
from .servers import LeakyServer, PythonTLSServer

RED = (0xB7, 0x1C, 0x1C)  # VERDICT_STYLE["VULNERABLE"] in outwork/scan/report.py
GREEN = (0x1B, 0x5E, 0x20)  # VERDICT_STYLE["OK"]


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB or RGBA PNG: zlib and the five
    row filters (PNG spec 9), nothing else."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack("!I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack("!IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind = raw[start]
        line = bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def colours(rows: list[bytes], channels: int) -> set[tuple[int, ...]]:
    return {
        tuple(row[i : i + 3]) for row in rows for i in range(0, len(row), channels * 2)
    }  # every other pixel is plenty


def test_html_report_renders_in_chromium(
    leaky_plaintext: LeakyServer, python_tls: PythonTLSServer, tmp_path: Path
) -> None:
    html = tmp_path / "report.html"
    run = run_scan(tmp_path, leaky_plaintext.address, python_tls.address, "--html", str(html))
    assert run.returncode == 1, run.stderr
    page = html.read_text()
    # Self-contained: no script, no external reference of any kind.
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(|https?://", page, re.I)
    assert f"{leaky_plaintext.address}: Vulnerable" in page
    assert f"{python_tls.address}: Nothing found" in page

    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [
            require_tool("chromium"),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=800,600",
            "--hide-scrollbars",
            html.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.exists(), result.stderr.decode()[-2000:]
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (800, 600)
    channels = len(rows[0]) // width
    seen = colours(rows, channels)
    assert len(seen) > 20, f"a near-blank screenshot: {len(seen)} colours"
    assert RED in seen, "no red verdict in the screenshot"
    assert GREEN in seen, "no green verdict in the screenshot"
