"""How the tests and benchmarks start headless Chromium (Debian's, driven by Playwright):
one set of flags, so every browser check plays under the same conditions."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


# the picture's position and the player page's own counts (roles/nginx/files/player/)
_SAMPLE_JS = """() => {
  const v = document.querySelector("video");
  const p = window.mediagridPlayer;
  return v && p ? [v.currentTime, p.stalls, p.stallMs, p.fatal, p.firstFrameMs !== null, p.lastError,
                   p.failovers || 0, p.returns || 0] : null;
}"""


@dataclass(frozen=True)
class Window:
    """What a player showed after one event (the kill of an encoder, its return)."""

    label: str
    freeze_s: float  # the longest time the picture's position did not move
    stalls: int  # the page's stalls ("waiting" while playing) in the window
    stall_s: float
    fatal: int  # errors hls.js could not get over
    advanced_s: float  # how far the position moved over the window
    last_error: str | None  # hls.js's last error (fatal or not) by then
    failovers: int  # live: the page moved to the stream's other origin (its own stopped answering)
    returns: int  # live: ... and back, once the first origin carried the stream again


def freezes(
    page_url: str, spki: Sequence[str], events: Sequence[tuple[str, Callable[[], None]]], every: float
) -> list[Window]:
    """Play ``page_url`` (the player page) in headless Chromium; once it plays, run each
    event ``every`` seconds apart, sampling the picture's position 20 times a second. The
    longest freeze is measured on the position itself, not only from the page's events."""
    from playwright.sync_api import sync_playwright

    out: list[Window] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=chromium_args(spki))
        try:
            page = browser.new_page()
            page.goto(page_url)
            deadline = time.monotonic() + 30
            while not ((got := page.evaluate(_SAMPLE_JS)) and got[4]):
                if time.monotonic() > deadline:
                    raise AssertionError("the player page showed no frame in 30 s")
                time.sleep(0.05)
            time.sleep(3)  # playing steadily, its buffer filled
            for label, event in events:
                first = page.evaluate(_SAMPLE_JS)
                event()
                moved_at, last, freeze = time.monotonic(), first[0], 0.0
                end = time.monotonic() + every
                while time.monotonic() < end:
                    now_pos = page.evaluate(_SAMPLE_JS)[0]
                    now = time.monotonic()
                    if now_pos != last:
                        last, moved_at = now_pos, now
                    freeze = max(freeze, now - moved_at)
                    time.sleep(0.05)
                done = page.evaluate(_SAMPLE_JS)
                out.append(
                    Window(
                        label,
                        round(freeze, 3),
                        int(done[1] - first[1]),
                        round((done[2] - first[2]) / 1000, 3),
                        int(done[3] - first[3]),
                        round(done[0] - first[0], 2),
                        done[5],
                        int(done[6] - first[6]),
                        int(done[7] - first[7]),
                    )
                )
        finally:
            browser.close()
    return out
