"""gc_paused: the collector is off inside, back to its previous state after (errors included)."""

import gc

import pytest

from attrret.gcpause import gc_paused


def test_pauses_and_restores_even_on_error():
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_leaves_a_disabled_collector_disabled():
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_parse_many_leaves_the_collector_on():
    from attrret.parser import CaptionParser

    qs = CaptionParser().parse_many(["A woman with a backpack.", "This is a red Geely SUV."])
    assert [q.kind for q in qs] == ["pedestrian", "vehicle"] and gc.isenabled()
