"""The origin agent's side of live transcoding that needs no nginx or MariaDB: the names and
costs of renditions."""

from __future__ import annotations

import pytest

from mediagrid import livetranscode


def test_renditions_are_ladder_rungs_with_a_cost() -> None:
    assert livetranscode.rendition_name("demo", "cam1", "240p") == "demo.cam1.240p"
    assert livetranscode.rung_of("480p").height == 480
    with pytest.raises(ValueError):
        livetranscode.rung_of("123p")
    assert livetranscode.cores(livetranscode.rung_of("480p")) == 1.0
    assert livetranscode.cores(livetranscode.rung_of("1080p")) > 1.0
