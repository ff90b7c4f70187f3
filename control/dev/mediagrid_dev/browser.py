"""How the tests and benchmarks start headless Chromium (Debian's, driven by Playwright):
one set of flags, so every browser check plays under the same conditions."""

from __future__ import annotations

from collections.abc import Sequence

CHROMIUM = "/usr/bin/chromium"

_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)


def chromium_args(spki_hashes: Sequence[str] = (), extra: Sequence[str] = ()) -> list[str]:
    """Chromium's flags: headless playback with autoplay, nothing fetched on its own, and
    (``spki_hashes``) the cluster's TLS keys pinned, since Chromium keeps its own trust store."""
    pins = ["--ignore-certificate-errors-spki-list=" + ",".join(spki_hashes)] if spki_hashes else []
    return [*_FLAGS, *pins, *extra]
