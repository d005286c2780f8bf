"""analyzer/collector.py: rarer cyclic collections during an analysis, the process's settings restored after."""
from __future__ import annotations

import gc
import threading
import weakref

from analyzer import collector
from analyzer.analyze import analyze_paths
from analyzer.collector import GEN0_THRESHOLD, few_collections
from dissectors.keylog import KeyStore

from .conftest import sample


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_the_block_freezes_what_exists_raises_the_threshold_and_restores_both():
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with few_collections():
        assert gc.get_threshold()[0] == max(GEN0_THRESHOLD, before[0])
        assert gc.get_threshold()[1:] == before[1:]
        assert gc.get_freeze_count() > frozen
        with few_collections():  # nested: no change, and leaving it changes nothing
            pass
        assert gc.get_threshold()[0] == max(GEN0_THRESHOLD, before[0])
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen


def test_cycles_made_inside_the_block_are_still_collected():
    with few_collections():
        refs = []
        for _ in range(3 * GEN0_THRESHOLD):
            n = _Node()
            refs.append(weakref.ref(n))
            del n
        # the collector ran on its own (no gc.collect here): most of the cycles are gone
        assert sum(r() is None for r in refs) > GEN0_THRESHOLD


def test_collections_turned_off_by_the_caller_stay_off():
    before = gc.get_threshold()
    gc.set_threshold(0)
    try:
        with few_collections():
            assert gc.get_threshold()[0] == 0
        assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)


def test_blocks_of_several_threads_restore_the_settings_when_the_last_one_ends():
    before = gc.get_threshold()
    inside, leave = threading.Barrier(3), threading.Event()

    def work() -> None:
        with few_collections():
            inside.wait()
            leave.wait()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    with few_collections():
        inside.wait()
        leave.set()
        for t in threads:
            t.join()
        assert gc.get_threshold()[0] == max(GEN0_THRESHOLD, before[0])  # this block still runs
    assert gc.get_threshold() == before
    assert collector._depth == 0


def test_an_analysis_leaves_the_process_as_it_found_it():
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    analysis = analyze_paths([sample("baseline") / "capture.pcapng"], KeyStore())
    assert analysis.captures
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == frozen
