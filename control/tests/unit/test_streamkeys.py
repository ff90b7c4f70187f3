"""Stream keys (issue 13): good at one origin, for one stream, until they expire."""

from __future__ import annotations

import pytest

from mediagrid import streamkeys

ORIGIN, OTHER = "origin-node-key-aaaaaaaaaaaaaaaa", "other-node-key-bbbbbbbbbbbbbbbbbb"


def test_a_key_publishes_its_stream_at_its_origin_until_it_expires() -> None:
    key = streamkeys.issue(ORIGIN, "demo", "cam1", "primary", expires=2000)
    raw = str(key)
    assert streamkeys.check(ORIGIN, "demo", "cam1", raw, now=1999) == (key, None)
    assert streamkeys.check(ORIGIN, "demo", "cam1", raw, now=2001) == (key, "key_expired")
    assert streamkeys.check(OTHER, "demo", "cam1", raw, now=1999)[1] == "bad_key"  # another origin
    assert streamkeys.check(ORIGIN, "demo", "cam2", raw, now=1999)[1] == "bad_key"  # another stream
    assert streamkeys.check(ORIGIN, "other", "cam1", raw, now=1999)[1] == "bad_key"  # another app


def test_the_role_and_expiry_are_signed() -> None:
    key = streamkeys.issue(ORIGIN, "demo", "cam1", "backup", expires=2000)
    forged = str(key).replace(".backup.", ".primary.")
    assert streamkeys.check(ORIGIN, "demo", "cam1", forged, now=1)[1] == "bad_key"
    later = str(key).replace(".2000.", ".9999.")
    assert streamkeys.check(ORIGIN, "demo", "cam1", later, now=1)[1] == "bad_key"


@pytest.mark.parametrize("raw", ["", None])
def test_a_missing_key(raw: str | None) -> None:
    assert streamkeys.check(ORIGIN, "demo", "cam1", raw, now=1) == (None, "missing_key")


@pytest.mark.parametrize(
    "raw", ["x", "a.b.c.d", "AAAAAAAAAAA.owner.1." + "A" * 43, "AAAAAAAAAAA.primary.1." + "A" * 42]
)
def test_a_malformed_key(raw: str) -> None:
    assert streamkeys.check(ORIGIN, "demo", "cam1", raw, now=1) == (None, "malformed_key")


@pytest.mark.parametrize("name", ["cam1", "a", "A_b-9", "x" * 64])
def test_stream_names_taken(name: str) -> None:
    assert streamkeys.valid_stream(name)


@pytest.mark.parametrize("name", ["", "a/b", "..", "a\x00", "x" * 65, "-lead", "_lead", "a b", "é"])
def test_stream_names_refused(name: str) -> None:
    assert not streamkeys.valid_stream(name)
    with pytest.raises(ValueError):
        streamkeys.issue(ORIGIN, "demo", name, "primary", 1)


def test_rtmp_names_carry_app_and_stream() -> None:
    assert streamkeys.rtmp_name("demo", "cam-1") == "demo.cam-1"
    assert streamkeys.split_rtmp_name("demo.cam-1") == ("demo", "cam-1")
    for name in ("demo", "demo.", ".cam", "Demo.cam", "demo.cam.x", "demo.a/b", "demo..cam", "de mo.cam"):
        assert streamkeys.split_rtmp_name(name) is None, name
