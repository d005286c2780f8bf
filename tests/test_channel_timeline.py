"""The inner-traffic timeline of a CSTP/DTLS channel (ChannelStats.series, the HTML report's plot): one-second
buckets, made twice as wide whenever MAX_TIMELINE are held, so that a channel of a day-long capture holds a bounded
timeline that still spans all of it."""
from __future__ import annotations

import math
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer import tcptracker
from analyzer.tcptracker import MAX_TIMELINE, ChannelStats

_PACKET = bytes([0x45, 0, 0, 60]) + bytes(56)  # an IPv4 header claiming the packet's 60 bytes


def _feed(stats: ChannelStats, packets) -> None:
    for i, (direction, ts, n) in enumerate(packets):
        stats.data(direction, ts, i + 1, _PACKET[:n], 0, None)


def _aggregate(series) -> dict:
    out: Counter = Counter()
    for d, sec, nbytes, npk in series:
        out[(d, sec, "bytes")] += nbytes
        out[(d, sec, "packets")] += npk
    return +out


_packets = st.lists(st.tuples(st.sampled_from(["c2s", "s2c"]), st.floats(-5.0, 3000.0), st.integers(0, 60)),
                    max_size=300).map(lambda ps: [(d, round(t, 3), n) for d, t, n in sorted(ps, key=lambda p: p[1])])


@settings(max_examples=150, deadline=None)
@given(packets=_packets, shuffle=st.randoms(use_true_random=False), limit=st.sampled_from([4, 8, 33, MAX_TIMELINE]),
       jitter=st.booleans())
def test_wider_buckets_hold_exactly_the_packets_of_their_span(packets, shuffle, limit, jitter):
    """Whatever the order of times (a capture's clock may step back), every packet is in the bucket of its direction
    whose span holds its time; the buckets are never more than the limit; until the limit is reached they are the
    one-second buckets the plot always had."""
    if jitter:  # a few packets out of order
        for _ in range(len(packets) // 10):
            i, j = shuffle.randrange(len(packets)), shuffle.randrange(len(packets))
            packets[i], packets[j] = packets[j], packets[i]
    saved = tcptracker.MAX_TIMELINE
    tcptracker.MAX_TIMELINE = limit
    try:
        stats = ChannelStats()
        _feed(stats, packets)
    finally:
        tcptracker.MAX_TIMELINE = saved
    series = stats.series()
    assert len(stats.timeline) <= limit
    w = stats._width
    assert w & (w - 1) == 0  # a power of two
    want: Counter = Counter()
    for d, ts, n in packets:
        start = math.floor(ts / w) * w
        want[(d, start, "bytes")] += n
        want[(d, start, "packets")] += 1
    assert _aggregate(series) == +want
    for _d, b in stats.timeline:
        assert b[0] % w == 0 and b[3] - b[0] == w
    if not jitter and len({(d, math.floor(ts)) for d, ts, _ in packets}) < limit:
        assert w == 1  # (times in order: one bucket per direction and second)


def test_a_day_long_channel_holds_a_bounded_timeline_spanning_the_whole_day():
    """24 h of a packet every half second each way (345 600 packets): the old per-second buckets stopped at the
    20 000th (a plot of the first 2.8 h); now at most MAX_TIMELINE buckets, the first at the start, the last at the
    end, every byte counted."""
    t0 = 1_795_000_000.25
    stats = ChannelStats()
    packets = [(d, t0 + k * 0.5, 60) for k in range(2 * 86_400) for d in ("c2s", "s2c")]
    _feed(stats, packets)
    series = stats.series()
    assert len(series) <= MAX_TIMELINE
    w = stats._width
    assert series[0][1] <= t0 < series[0][1] + w
    assert series[-1][1] <= packets[-1][1] < series[-1][1] + w
    for d in ("c2s", "s2c"):
        assert sum(b for dd, _s, b, _p in series if dd == d) == 60 * 2 * 86_400
        assert sum(p for dd, _s, _b, p in series if dd == d) == 2 * 86_400
    # the plot's resolution (at most 400 bars over the session) is still finer than a bucket is wide
    assert w <= 86_400 / 400


def test_times_scattered_over_eons_keep_the_timeline_bounded_and_quick(monkeypatch):
    """A damaged or hostile capture: times jumping across ±1e30 s. No width merges them all; past the widest
    buckets the new ones are kept out of the timeline (the plot's), which stays within its bound, without a widening
    per packet."""
    monkeypatch.setattr(tcptracker, "MAX_TIMELINE", 16)
    calls = []
    real = ChannelStats._widen
    monkeypatch.setattr(ChannelStats, "_widen", lambda self: (calls.append(1), real(self)))
    stats = ChannelStats()
    packets = [("c2s" if k % 3 else "s2c", (-1) ** k * 1e30 / (k + 1), 60) for k in range(20_000)]
    _feed(stats, packets)
    assert len(stats.timeline) <= 16
    assert stats._width >= 1 << 64 and len(calls) < 10
