"""`acflow analyze --jobs N`: one analysis split over N processes by address pair, merged into the same result.

Sessions are independent per client, so the frames are sharded by the unordered pair of IP addresses of their
packet (an ICMP error by the pair of the packet it quotes): every frame of a flow, every fragment of a datagram,
every flow between the same two hosts falls in one shard. Each shard is one process running the ordinary driver
(analyzer/driver.py: fast lanes, decryption, trackers) feeding it only its own frames, up to the end of the
pipeline (`Pipeline.finish`). How a shard gets its frames:

* indexed (uncompressed pcap and pcapng files): stage 1, every process walks one byte range of each file
  (`index_part`: the first packet boundary after the range's nominal start is guessed from the bytes,
  `PcapParser.resync`) and notes each frame's offset and the bucket of its address pair (`bucket_of`: 256 buckets;
  `PcapParser.index_range`), written to two files of the run's temporary directory (`_spilled`); `plan_index`
  checks that each range's walk ended exactly where the next one started and gives each shard whole buckets
  (balanced by their frame counts: `assign`); stage 2, each shard picks its frames and their numbers out of the
  parts' files (`shard_parts`) and reads them at those offsets (`PcapParser.frames_at`) after the file's head (pcap
  header; pcapng section, interfaces, secrets). A range holding anything but packets (a block after the first
  packet that changes the parser's state, a damaged block or record) or a wrong guess sends every shard to the
  other way;
* walked: every process reads the whole file, its parser building only its shard's frames (``keep``); the
  buckets are balanced by the bytes of the first SAMPLE_FRAMES frames (`sample_pairs`).

Nothing is copied between processes but the index and the results. The connection trackers of every shard are
then sent to this process, which builds the sessions and applies the rules once, over all of them, exactly as
`Analyzer.finish` does: groups, sessions and findings that span clients (a reconnect from another address) come
out as in one process.

What makes the result identical to ``--jobs 1``:

* stream numbers: each shard numbers its flows in its own order; the flow table reports every number it gives
  (`FlowTable.on_number`) with the frame, and since each frame belongs to one shard, the whole file's tcp.stream /
  udp.stream number of a flow is the rank of its numbering frame among all shards' (per capture file and protocol);
  the trackers are renumbered before the sessions are built;
* dictionary order (ties in the other-traffic summary, groups starting at the same time): the trackers are merged
  in the order they were created in, by the frame that created them;
* the capture summary (frames, first/last time, errors, embedded keys) is that of the first shard: every shard
  sees every event of the file (indexed: the head's, and the frame count and times the index found), its parser
  counting (and timing) the frames it does not build;
* exported inner packets are written in the order they were decapsulated: by the frame being processed, then in
  each shard's order (packets flushed at the end of the capture: shard by shard);
* the few ways one flow's analysis depends on another flow's during the pass — DTLS keys derived from a CONNECT
  (DTLS from another address than its TLS connection), a TLS 1.2 session resumed from the session cache, the role
  of a DTLS flow whose first datagram is not a handshake — are checked after the shards end: if any of them
  crossed shards, the capture is analysed again in one process (`ParallelFallback`; said on stderr).

Limits where shards may differ from one process (all far beyond the committed captures): the flow-table bound
(65 536 concurrent flows per protocol) and the 1000-ICMP / 65 536-other-UDP-flow summaries apply per shard.
"""
from __future__ import annotations

import gc
import heapq
import io
import ipaddress
import itertools
import mmap
import os
import pickle
import stat
import time
import zlib
from array import array
from collections import Counter
from pathlib import Path

from dissectors import packet as packet_mod
from dissectors.flows import FlowTable
from dissectors.keylog import KeyStore
from dissectors.pcapfile import CaptureError, Frame, PcapParser, head_length
from dissectors.tls.session import SessionCache

from .attempts import bounded
from .capture import CaptureFormatError, read_capture_batches
from .collector import few_collections
from .dns_lookups import Lookups
from .driver import Analyzer, build_sessions
from .model import Analysis

#: captures at least this big (bytes, all files) are analysed with --jobs auto on several cores, when their
#: traffic is spread over several address pairs (see `auto_jobs`)
AUTO_MIN_BYTES = 50 << 20
#: share of the sampled bytes the biggest shard may hold for --jobs auto to split the capture
AUTO_MAX_SHARE = 0.8
SAMPLE_FRAMES = 10_000
#: uncompressed pcap/pcapng files at least this big are indexed by parts (one per process); smaller ones by one process
INDEX_MIN_BYTES = 1 << 20
_READ_BATCH = 1024  # frames read from an index at a time
_WINDOW = 16 << 20  # bytes of a mapped file walked or read before their pages are given back
MAX_JOBS = 256  # shards are numbered in one byte per packet by the index pass
AUTO_MAX_JOBS = 8
_INF = float("inf")


class ParallelFallback(Exception):
    """The shards' flows depended on each other (the reason): analyse in one process instead."""


# -- sharding ------------------------------------------------------------------------------------------------

def _pair_of(fr) -> bytes | None:
    """The unordered address pair of a frame's packet (packed addresses, lower first), or None (not IP)."""
    view = packet_mod.plain_ipv4(fr.linktype, fr.data)
    if view is not None:
        return _ordered(view[1])
    pkt = packet_mod.decode(fr.linktype, fr.data)
    if pkt is None:
        return None
    inner = pkt.icmp_inner
    src, dst = (pkt.src, pkt.dst)
    if pkt.encap is not None:  # a packet inside VXLAN, ERSPAN…: the outer pair, as its plain frames give it
        src, dst = pkt.encap[1], pkt.encap[2]
    elif pkt.proto in (1, 58) and inner is not None:
        src, dst = (inner.get("src"), inner.get("dst")) if isinstance(inner, dict) else (inner.src, inner.dst)
    try:
        a, b = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    except (TypeError, ValueError):
        return None
    return a + b if a <= b else b + a


def _plain_addresses(linktype: int, buf, start: int, length: int):
    """The raw 8-byte address field (source, destination) of an IPv4-on-Ethernet frame that is not ICMP (an ICMP
    error goes with the packet it quotes) at ``buf[start:start + length]``, else None: the pair `_pair_of` gives,
    read directly, whatever the header holds beyond the addresses (options, fragments)."""
    if linktype == 1 and length >= 34 and buf[start + 12] == 8 and buf[start + 13] == 0 and buf[start + 23] != 1:
        return buf[start + 26:start + 34]
    return None


def _ordered(raw) -> bytes:
    """The unordered pair (lower address first) of a raw IPv4 address field."""
    a, b = bytes(raw[:4]), bytes(raw[4:8])
    return a + b if a <= b else b + a


NBUCKETS = 256  # address pairs are hashed into this many buckets; shards are made of whole buckets


def bucket_of(pair: bytes | None) -> int:
    """The bucket of an address pair (`_pair_of`; None, not IP: bucket 0)."""
    return 0 if pair is None else zlib.crc32(pair) % NBUCKETS


class Sharder:
    """Frame → shard: the bucket of the frame's address pair (`bucket_of`), then ``table[bucket]`` (bytes of
    NBUCKETS shard numbers, from `assign`; default: the bucket modulo ``nshards``). ``Sharder(NBUCKETS,
    IDENTITY)`` gives the bucket itself: what the index pass notes per frame."""

    def __init__(self, nshards: int, table: bytes | None = None) -> None:
        self.n = nshards
        self.table = table if table is not None else bytes(b % nshards for b in range(NBUCKETS))
        if len(self.table) != NBUCKETS or max(self.table) >= nshards:
            raise ValueError("a shard table maps each of the NBUCKETS buckets to a shard below nshards")
        self._raw: dict = {}  # raw 8-byte IPv4 address field of plain frames -> shard

    def __call__(self, fr) -> int:
        data = fr.data
        raw = _plain_addresses(fr.linktype, data, 0, len(data))
        if raw is not None:
            s = self._raw.get(raw)
            if s is None:
                s = self._raw[raw] = self.of_pair(_ordered(raw))
            return s
        return self.of_pair(_pair_of(fr))

    def keeper(self, me: int, seen: list | None = None):
        """`PcapParser`'s ``keep`` filter of shard ``me``: the same decision as calling the sharder on the Frame,
        from the parser's buffer (no Frame is built for another shard's frames). ``seen``, if given, is kept as
        [frames, first time, last time] of every frame of the capture."""
        classify = self.classifier()

        def keep(linktype, buf, start, length, ts=None) -> bool:
            if seen is not None:
                seen[0] += 1
                if seen[1] is None:
                    seen[1] = ts
                seen[2] = ts
            return classify(linktype, buf, start, length) == me

        return keep

    def classifier(self):
        """``classify(linktype, buf, start, length) -> shard`` of a frame in a buffer (`PcapParser.index_range`):
        the sharder's decision without building a Frame."""
        raw_cache = self._raw

        def classify(linktype, buf, start, length) -> int:
            # `_plain_addresses` written out: one Python call per packet of the index pass, not two
            if linktype == 1 and length >= 34 and buf[start + 12] == 8 and buf[start + 13] == 0 and \
                    buf[start + 23] != 1:
                raw = buf[start + 26:start + 34]
                s = raw_cache.get(raw)
                if s is None:
                    s = raw_cache[raw] = self.of_pair(_ordered(raw))
                return s
            return self.of_pair(_pair_of(_Raw(linktype, bytes(buf[start:start + length]))))

        return classify

    def of_pair(self, pair: bytes | None) -> int:
        return self.table[bucket_of(pair)]


IDENTITY = bytes(range(NBUCKETS))  # the index pass's table: a frame's bucket


class _Raw:
    __slots__ = ("data", "linktype")

    def __init__(self, linktype: int, data: bytes) -> None:
        self.linktype, self.data = linktype, data


def sample_pairs(paths, limit: int = SAMPLE_FRAMES) -> dict[bytes, int]:
    """Bytes per address pair over the first ``limit`` frames (the capture's opening minutes)."""
    weights: dict[bytes, int] = {}
    seen = 0
    pairs: dict = {}  # raw address field of a plain IPv4-on-Ethernet frame -> its pair (as Sharder reads it)
    for path in paths:
        try:
            for batch in read_capture_batches(path):
                for ev in batch:
                    if type(ev) is Frame:
                        data = ev.data
                        raw = _plain_addresses(ev.linktype, data, 0, len(data))
                        if raw is not None:
                            p = pairs.get(raw)
                            if p is None:
                                p = pairs[raw] = _ordered(raw)
                        else:
                            p = _pair_of(ev)
                        weights[p] = weights.get(p, 0) + len(data)
                        seen += 1
                if seen >= limit:
                    return weights
        except (CaptureFormatError, OSError):
            return weights
    return weights


def bucket_weights(pair_weights: dict) -> dict[int, int]:
    """`sample_pairs`' weights summed per bucket."""
    out: dict[int, int] = {}
    for pair, w in pair_weights.items():
        b = bucket_of(pair)
        out[b] = out.get(b, 0) + w
    return out


def assign(weights: dict, nshards: int) -> tuple[bytes, list[int]]:
    """Greedy balance of buckets (weights: bucket → work, e.g. frames or bytes) over ``nshards``: heaviest first to
    the least loaded shard. Returns (the shard table: bucket → shard, as `Sharder` takes it; the work per shard).
    Buckets without weight go round-robin."""
    loads = [(0, i) for i in range(nshards)]
    table = bytearray(b % nshards for b in range(NBUCKETS))
    per = [0] * nshards
    for bucket, w in sorted(weights.items(), key=lambda kv: (-kv[1], kv[0])):
        load, i = heapq.heappop(loads)
        table[bucket] = i
        per[i] += w
        heapq.heappush(loads, (load + w, i))
    return bytes(table), per


def auto_jobs(paths, cores: int | None = None) -> int:
    """--jobs auto: 1 for captures under AUTO_MIN_BYTES or whose sampled traffic (the first SAMPLE_FRAMES frames) is
    mostly one address pair (one big tunnel: splitting by client would not help), else the machine's cores (at
    most AUTO_MAX_JOBS, and no more than the address-pair buckets with 2 % of the sampled frames or more)."""
    cores = cores or os.cpu_count() or 1
    if cores < 2:
        return 1
    try:
        size = sum(os.path.getsize(p) for p in paths)
    except OSError:
        return 1
    if size < AUTO_MIN_BYTES:
        return 1
    weights = sample_buckets(paths)
    if weights is None:  # (compressed…) the first frames parsed
        weights = bucket_weights(sample_pairs(paths))
    total = sum(weights.values())
    # no more shards than address-pair buckets that carry traffic (an idle shard still costs a process), nor than
    # AUTO_MAX_JOBS
    n = min(cores, AUTO_MAX_JOBS, sum(1 for w in weights.values() if w >= 0.02 * total))
    if n < 2:
        return 1
    _table, per = assign(weights, n)
    if not total or max(per) > AUTO_MAX_SHARE * total:
        return 1
    return n


def sample_buckets(paths, limit: int = SAMPLE_FRAMES) -> dict[int, int] | None:
    """Frames per address-pair bucket over the first ``limit`` frames, read as the index pass reads them (block
    headers and address fields only: less than half what parsing the frames costs); None when a file is not one the
    index pass reads (`head_of`)."""
    counts: Counter = Counter()
    classify = Sharder(NBUCKETS, IDENTITY).classifier()
    plain: dict = {}  # raw address field -> bucket (see `PcapParser.index_range`)
    for path in paths:
        head = head_of(path)
        if head is None:
            return None
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            parser = PcapParser()
            parser.feed(buf[:head[0]])
            pos, size, n = head[0], len(buf), sum(counts.values())
            while n < limit and pos < size:  # 1 MiB at a time: no further than the sample
                r = parser.index_range(buf, pos, min(size, pos + (1 << 20)), classify, plain=plain)
                counts.update(r["shards"][:limit - n])
                n += len(r["shards"])
                if r["status"] != "ok" or r["crossing"] == pos:  # the frames before what the walk does not take
                    break
                pos = r["crossing"]
        if n >= limit:
            break
    return dict(counts)


# -- the index pass: each process walks a part of each file ------------------------------------------------

def part_bounds(parser: PcapParser, buf, head: int, k: int, n: int) -> tuple[int | None, int]:
    """(where part ``k`` of ``n`` of the file ``buf`` starts, where its nominal range ends): the parts split the bytes
    after the head evenly; part k > 0 starts at the first packet boundary at or after its nominal start
    (`PcapParser.resync`: None when none is found). ``parser`` has been fed the head."""
    size = len(buf)
    lo = head + (size - head) * k // n
    hi = size if k == n - 1 else head + (size - head) * (k + 1) // n
    return (head if k == 0 else parser.resync(buf, lo)), hi


def index_part(job: dict) -> dict:
    """Stage 1 of an indexed --jobs run, part ``job["part"]`` of ``job["parts"]`` of the pcapng ``job["path"]``:
    the byte range's Enhanced Packet Blocks, their offsets and ordinals per shard (`PcapParser.index_range`). Part
    k > 0 starts at the first block boundary at or after its nominal start (`PcapParser.resync`), which
    `plan_index` checks against where part k - 1 ended."""
    path, k, n, head = job["path"], job["part"], job["parts"], job["head"]
    classify = Sharder(NBUCKETS, IDENTITY).classifier()  # each packet's bucket (the shards are made of buckets later)
    plain: dict = {}  # the buckets of plain IPv4 frames by their raw address field, read by the walk itself
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        parser = PcapParser()
        parser.feed(buf[:head])
        start, hi = part_bounds(parser, buf, head, k, n)
        if start is None:
            return {"status": "other", "start": None, "crossing": None}
        # the range a window at a time, each window's pages given back once walked: the process's resident memory
        # stays flat whatever the file's size (the pages stay in the page cache)
        out = None
        pos = start
        while True:
            r = parser.index_range(buf, pos, min(hi, pos + job["window"]), classify, out["count"] if out else 0,
                                   plain)
            _release(buf, pos, r["crossing"])
            if out is None:
                out = r
            else:
                out["offsets"].extend(r["offsets"])
                out["shards"].extend(r["shards"])
                out["statistics"] += r["statistics"]
                out["first_ts"] = out["first_ts"] if out["first_ts"] is not None else r["first_ts"]
                out["last_ts"] = r["last_ts"] if r["last_ts"] is not None else out["last_ts"]
                out["count"], out["status"], out["crossing"] = r["count"], r["status"], r["crossing"]
            if r["status"] != "ok" or r["crossing"] >= hi or r["crossing"] == pos:
                return _spilled(out, job.get("spill"), f"index-{job.get('file', 0)}-{k}")
            pos = r["crossing"]


def _spilled(r: dict, spill: str | None, name: str) -> dict:
    """An `index_part` result whose offsets and buckets are written to two files in the directory ``spill`` (if
    given) instead of travelling in it: nothing the size of the capture's frame count is pickled between processes,
    and each shard reads them from the page cache (`shard_parts`)."""
    if spill is None or r["status"] != "ok":
        return r
    base = Path(spill) / name
    with open(f"{base}.offsets", "wb") as f:
        r["offsets"].tofile(f)
    with open(f"{base}.buckets", "wb") as f:
        f.write(r["shards"])
    return dict(r, offsets=f"{base}.offsets", shards=f"{base}.buckets")


def _part_buckets(shards) -> bytes:
    """A part's buckets (one byte per frame): in the index result, or in the file `_spilled` wrote them to."""
    return Path(shards).read_bytes() if isinstance(shards, str) else shards


def _release(buf, start: int, end: int) -> None:
    """Give back the pages of ``buf`` (a read-only file mapping) wholly inside [start, end): read, not needed again
    (MADV_DONTNEED drops them from this process, not from the page cache)."""
    lo = (start + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
    hi = end // mmap.PAGESIZE * mmap.PAGESIZE
    if hi > lo and hasattr(mmap, "MADV_DONTNEED"):
        try:
            buf.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        except (OSError, ValueError):
            pass


def head_of(path) -> tuple[int, int] | None:
    """(head length, file size) of an uncompressed pcap/pcapng capture an indexed run can read, else None
    (compressed, not a regular file, a head `head_length` refuses or the parser reports anything of)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size < 64:
                return None
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                head = head_length(buf)
                # a head the parser reports anything of (a damaged secrets block…) is read whole: the parser may
                # stop there, and the frames after it must not be read
                if head is None or any(type(ev) is CaptureError for ev in PcapParser().feed(buf[:head])):
                    return None
    except (OSError, ValueError):
        return None
    return head, st.st_size


def plan_index(parts: dict, heads: list, nshards: int) -> tuple[list[list[dict]], bytes] | None:
    """From every part's index (``parts[(file, k)]``: each packet's bucket), the shard table (`assign`, balancing
    the buckets' frame counts over the whole capture) and each shard's reading plan: per file, its head length, the
    parts' indexes with the shard's bucket mask (`shard_parts` picks its frames out, in the shard's own process:
    this one only counts), the file's frame count and first/last times. None when a part met what only a whole
    read reproduces or the parts do not meet exactly (a resync guessed wrong)."""
    counts: Counter = Counter()
    for r in parts.values():
        if r["status"] != "ok":
            return None
        counts.update(_part_buckets(r["shards"]))  # (counted at C speed)
    table, _per = assign(dict(counts), nshards)
    masks = [bytes(1 if table[b] == shard else 0 for b in range(NBUCKETS)) for shard in range(nshards)]
    files: list[tuple] = []
    for i, (head, size) in enumerate(heads):
        k, indexed, base = 0, [], 0
        first = last = None
        statistics: list[int] = []  # the Interface Statistics Blocks the walks passed, in file order
        while (i, k) in parts:
            r = parts[(i, k)]
            statistics += r["statistics"]
            nxt = parts.get((i, k + 1))
            if r["crossing"] != (nxt["start"] if nxt is not None else size):
                return None
            indexed.append((r["offsets"], r["shards"], base))
            base += r["count"]
            if r["first_ts"] is not None:
                first = r["first_ts"] if first is None else first
                last = r["last_ts"]
            k += 1
        files.append((head, indexed, base, first, last, statistics))
    plans = [[{"head": head, "parts": indexed, "mask": masks[shard], "frames": frames, "first": first,
               "last": last, "statistics": stats} for head, indexed, frames, first, last, stats in files]
             for shard in range(nshards)]
    return plans, table


def shard_parts(file_plan: dict):
    """(offsets, ordinals, base) of the shard's frames in each part of a file of its `plan_index` plan (frame
    ``base + ordinal`` at each offset), picked out at C speed (a 0/1 mask per packet); a part's index is read from
    its files when `_spilled` wrote it there."""
    mask_table = file_plan["mask"]
    for offsets, buckets, base in file_plan["parts"]:
        mask = _part_buckets(buckets).translate(mask_table)
        if 1 not in mask:
            continue
        ordinals = array("I", itertools.compress(range(1, len(mask) + 1), mask))
        if isinstance(offsets, str):
            mine = array("Q")
            with open(offsets, "rb") as f:
                mine.fromfile(f, len(mask))  # (native order: written by this machine's index pass)
            offsets = mine
        yield array("Q", itertools.compress(offsets, mask)), ordinals, base


# -- one shard (in its own process) --------------------------------------------------------------------------

def _shard_ref(name: str):
    """Stands, in a shard's pickle, for an object of the merging process (`_ShardUnpickler.find_class` resolves it)."""
    raise RuntimeError(f"{name}: a shard's reference outside _ShardUnpickler")


class _ShardPickler(pickle.Pickler):
    """Trackers out of a shard: its pipeline, key store and session cache by reference (the merging side puts its
    own in their place), ciphers and the flow table dropped (the pass is over: nothing is decrypted any more).
    Through `reducer_override`, which the pickler does not call for the plain values that are most of the objects
    (None, booleans, numbers, strings, bytes, exact lists/dicts/tuples/sets); `persistent_id` would be a Python
    call for every one of them."""

    def __init__(self, f, pipe) -> None:
        super().__init__(f, protocol=pickle.HIGHEST_PROTOCOL)
        self.pipe = pipe

    def reducer_override(self, obj):
        if obj is self.pipe:
            return _shard_ref, ("pipe",)
        t = type(obj)
        if t is KeyStore:
            return _shard_ref, ("keys",)
        if t is SessionCache:
            return _shard_ref, ("cache",)
        if t is FlowTable:  # a TCPStream's table (its fast path keeps the table's order): the pass is over
            return _shard_ref, ("none",)
        if (getattr(t, "__module__", None) or "").startswith("cryptography"):
            return _shard_ref, ("none",)
        return NotImplemented


class _ShardUnpickler(pickle.Unpickler):
    def __init__(self, f, refs: dict) -> None:
        super().__init__(f)
        self.refs = refs

    def find_class(self, module: str, name: str):
        if name == "_shard_ref" and module == __name__:
            return self.refs.__getitem__
        return super().find_class(module, name)


_COUNTS = None  # frames analysed per shard, shared by the processes of an --jobs run (see `_share_counts`)


def _share_counts(counts) -> None:
    """The worker processes' initializer: the run's shared per-shard frame counts (an unlocked
    multiprocessing.Array: each shard writes only its own slot)."""
    global _COUNTS  # noqa: PLW0603 - one per process, set once when the process starts
    _COUNTS = counts


@few_collections()
def run_shard(job: dict) -> dict:
    """Analyse shard ``job["shard"]`` of ``job["paths"]`` up to the end of the pipeline; return its trackers
    (pickled), the stream numbers it gave, its inner packets and (every shard) the capture summaries."""
    from .analyze import load_keys  # noqa: PLC0415 - analyze imports this module

    cpu0 = time.process_time()
    keys, info = load_keys(job["keylogs"], job["rsa_keys"])
    sharder = Sharder(job["nshards"], job["table"])
    me = job["shard"]
    cur = [0, 0]  # (capture ordinal, frame being processed)
    inner = _InnerSpool(Path(job["inner"]) / f"inner-{me}.pickles") if job["inner"] else None
    sink = None
    if inner is not None:
        def sink(channel, direction, ts, frame, packet):
            inner.add((cur[0], cur[1], me, inner.n, channel, direction, ts, frame, bytes(packet)))
    an = Analyzer(keys, key_info=info, inner_sink=sink, fast_lanes=job["fast_lanes"], max_flows=job["max_flows"])
    pipe = an.pipeline
    numbering: list = []
    pipe.flows.on_number = lambda flow, udp, cap, n: numbering.append((cap, bool(udp), n, cur[1]))
    made = {"tcp": {}, "udp": {}, "udp_other": {}}  # dict key -> (capture ordinal, creating frame)
    tables = (("tcp", pipe.tcp), ("udp", pipe.udp), ("udp_other", pipe.udp_other))
    ptcp, pudp, pother = pipe.tcp, pipe.udp, pipe.udp_other
    general = pipe.feed_general

    def noting_general(fr, ts) -> None:
        # trackers are created, and flows numbered, only on the general path: note the frame that does
        cur[1] = fr.number
        n = len(ptcp) + len(pudp) + len(pother)  # trackers are only ever added
        general(fr, ts)
        if len(ptcp) + len(pudp) + len(pother) != n:
            _note_new(made, tables, (cur[0], fr.number))

    pipe.feed_general = noting_general
    feed = an.feed
    plan = job.get("plan")

    # the shared frame counts: the workers' from their initializer, the merging process's own shard's (with its
    # progress callback) in its job
    counts, progress = job.get("counts", _COUNTS), job.get("progress")

    def feed_batch(batch) -> None:
        if inner is None:
            an.feed_events(batch)  # the batch loop, lanes and all
        else:
            for ev in batch:  # exported inner packets are ordered by the frame being processed: frame by frame
                if type(ev) is Frame:
                    cur[1] = ev.number
                    feed(ev)
                else:
                    an.feed_events([ev])
        if counts is not None:
            counts[me] = pipe.frames
            if progress is not None:
                progress(sum(counts))

    for ordinal, path in enumerate(job["paths"]):
        ci = an.start_capture(str(path))
        cur[0] = ordinal
        if plan is not None:  # indexed: this shard's frames only, read where the index pass found them
            mine = plan[ordinal]
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                parser = PcapParser()
                feed_batch(parser.feed(buf[:mine["head"]]))  # section, interfaces, secrets: every shard
                done = 0  # pages before this offset are given back (see _release)
                for offsets, ordinals, base in shard_parts(mine):
                    for i in range(0, len(offsets), _READ_BATCH):
                        feed_batch(parser.frames_at(buf, offsets[i:i + _READ_BATCH], ordinals[i:i + _READ_BATCH],
                                                    base))
                        upto = offsets[min(i + _READ_BATCH, len(offsets)) - 1]
                        if upto - done >= job["window"]:
                            _release(buf, done, upto)
                            done = upto
                # the capturing program's counters (Interface Statistics Blocks): every shard, as the head
                feed_batch(parser.statistics_at(buf, mine["statistics"]))
            an.end_capture()
            ci.frames, ci.first, ci.last = mine["frames"], mine["first"], mine["last"]
            pipe.last_ts = ci.last if ci.last is not None else pipe.last_ts
            continue
        seen = [0, None, None]  # every frame of the file: count, first and last time (the capture summary)
        keep = sharder.keeper(me, seen)  # the parser builds this shard's frames only
        for batch in _batches(path, keep):
            feed_batch(batch)
        an.end_capture()
        ci.frames, ci.first, ci.last = seen
        pipe.last_ts = seen[2] if seen[2] is not None else pipe.last_ts
    cur[0], cur[1] = len(job["paths"]), _INF
    pipe.finish()
    _note_new(made, tables, (len(job["paths"]), _INF))
    f = io.BytesIO()
    state = {
        "tcp": [(made["tcp"].get(k, (_INF, _INF)), v) for k, v in pipe.tcp.items()],
        "udp": [(made["udp"].get(k, (_INF, _INF)), v) for k, v in pipe.udp.items()],
        "udp_other": [(made["udp_other"].get(k, (_INF, _INF)), v) for k, v in pipe.udp_other.items()],
        "dtls_keys": pipe.dtls_keys, "icmp_unreachable": pipe.icmp_unreachable,
        "failed_connects": pipe.failed_connects, "failed_connects_total": pipe.failed_connects_total,
        "dns": pipe.dns.entries, "dns_overflow": pipe.dns.overflow, "tunnel_devices": pipe.tunnel_devices,
    }
    if inner is not None:
        inner.close()
    if job.get("in_process"):
        # the merging process's own shard: its trackers as they are (after the pass nothing calls their host,
        # key store or session cache; the ciphers and flow table they still hold are never used again)
        return {"shard": me, "objects": state, "numbering": numbering, "inner": str(inner.path) if inner is not None
                else None, "captures": an.analysis.captures, "last_ts": pipe.last_ts, "stats": _stats(pipe),
                "cpu": round(time.process_time() - cpu0, 4)}
    _ShardPickler(f, pipe).dump(state)
    return {"shard": me, "state": f.getvalue(), "numbering": numbering, "cpu": round(time.process_time() - cpu0, 4),
            "inner": str(inner.path) if inner is not None else None,
            "captures": an.analysis.captures, "last_ts": pipe.last_ts, "stats": _stats(pipe)}


def _stats(pipe) -> dict:
    return {"frames": pipe.frames, "undecodable": pipe.undecodable, "evicted": pipe.evicted,
            "fast_frames": pipe.fast_frames, "udp_other_overflow": pipe.udp_other_overflow,
            "snapped_frames": pipe.snapped_frames, "snapped_first": pipe.snapped_first,
            "snapped_max": pipe.snapped_max, "encapsulated": pipe.encapsulated}


class _InnerSpool:
    """A shard's inner packets, in the order it decapsulated them (its frames in order: sorted), spooled to a file
    in batches, for the merging process to interleave with the other shards' without holding them in memory."""

    BATCH = 2048

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f = open(path, "wb")  # noqa: SIM115 - closed by close()
        self.buf: list = []
        self.n = 0

    def add(self, record: tuple) -> None:
        self.buf.append(record)
        self.n += 1
        if len(self.buf) >= self.BATCH:
            pickle.dump(self.buf, self.f, protocol=pickle.HIGHEST_PROTOCOL)
            self.buf = []

    def close(self) -> None:
        if self.buf:
            pickle.dump(self.buf, self.f, protocol=pickle.HIGHEST_PROTOCOL)
            self.buf = []
        self.f.close()


def _spooled(path: str):
    with open(path, "rb") as f:
        while True:
            try:
                batch = pickle.load(f)
            except EOFError:
                return
            yield from batch


def _batches(path, keep=None):
    from .analyze import InputError  # noqa: PLC0415

    try:
        yield from read_capture_batches(path, keep=keep)
    except CaptureFormatError as e:
        raise InputError(str(e)) from e
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e


def _note_new(made: dict, tables, where) -> None:
    for name, d in tables:
        known = made[name]
        grown = len(d) - len(known)
        if grown > 0:
            for k in itertools.islice(reversed(d), grown):
                known.setdefault(k, where)


# -- merging -------------------------------------------------------------------------------------------------

class MergedPipeline:
    """What `reconstruct` and `apply_rules` read of a pipeline, made of every shard's (see `Pipeline`)."""

    def __init__(self, keys, captures: list[str]) -> None:
        self.keys = keys
        self.session_cache = SessionCache()
        self.tcp: dict = {}
        self.udp: dict = {}
        self.udp_other: dict = {}
        self.udp_other_overflow = 0
        self.icmp_unreachable: list = []
        self.failed_connects: list = []
        self.failed_connects_total = 0
        self.dns = Lookups()
        self.dtls_keys: dict = {}
        self.captures = list(captures)
        self.inner_packet = None  # TrackerHost: no inner packets after the pass
        self.frames = self.undecodable = self.evicted = self.fast_frames = 0
        self.snapped_frames = self.snapped_max = 0
        self.snapped_first: tuple | None = None
        self.encapsulated: dict = {}
        self.tunnel_devices: dict = {}
        self.last_ts = None

    # the TrackerHost calls a tracker may still make (nothing happens after the pass)
    def on_connect(self, *a) -> None:
        pass

    def on_dtls_hello(self, *a) -> None:
        pass


def _renumber(results: list[dict]) -> dict:
    """(shard, capture, udp, local number) -> number in the whole file."""
    events: dict = {}
    for r in results:
        for cap, udp, n, frame in r["numbering"]:
            events.setdefault((cap, udp), []).append((frame, r["shard"], n))
    out = {}
    for (cap, udp), evs in events.items():
        evs.sort()
        for rank, (_frame, shard, n) in enumerate(evs):
            out[(shard, cap, udp, n)] = rank
    return out


def merge(results: list[dict], keys, paths, gateways=None) -> tuple[Analysis, MergedPipeline]:
    """The `Analysis` of the whole capture from its shards' results (raises ParallelFallback)."""
    results = sorted(results, key=lambda r: r["shard"])
    pipe = MergedPipeline(keys, [str(p) for p in paths])
    numbers = _renumber(results)
    tcp, udp, other = [], [], []
    for r in results:
        state = r["objects"] if "objects" in r else _ShardUnpickler(
            io.BytesIO(r["state"]), {"pipe": pipe, "keys": keys, "cache": pipe.session_cache, "none": None}).load()
        shard = r["shard"]
        old_keys = {}
        for kind, is_udp in (("tcp", False), ("udp", True)):
            for _where, t in state[kind]:
                old_keys[t.key] = t
                new = [(c, numbers[(shard, c, is_udp, n)]) for c, n in t.numbers]
                t.numbers[:] = new
                if new:
                    t.index = new[0][1]
        for _where, t in state["udp"]:
            cont = getattr(t, "continues", None)
            if isinstance(cont, str) and cont in old_keys:
                t.continues = old_keys[cont].key
        tcp += [(where, shard, i, t) for i, (where, t) in enumerate(state["tcp"])]
        udp += [(where, shard, i, t) for i, (where, t) in enumerate(state["udp"])]
        other += [(where, shard, i, v) for i, (where, v) in enumerate(state["udp_other"])]
        for sid, info in state["dtls_keys"].items():
            pipe.dtls_keys.setdefault(sid, info)
        pipe.icmp_unreachable += state["icmp_unreachable"]
        for f in state["failed_connects"]:
            f.numbers = [(c, numbers[(shard, c, False, n)]) for c, n in f.numbers]
            f.index = f.numbers[0][1]
            pipe.failed_connects.append(f)
        pipe.failed_connects_total += state["failed_connects_total"]
        pipe.dns.merge(state["dns"])
        pipe.dns.overflow += state["dns_overflow"]
        for k, dev in state["tunnel_devices"].items():
            if k in pipe.tunnel_devices:
                pipe.tunnel_devices[k].merge(dev)
            else:
                pipe.tunnel_devices[k] = dev
        st = r["stats"]
        pipe.frames += st["frames"]
        pipe.undecodable += st["undecodable"]
        pipe.evicted += st["evicted"]
        pipe.fast_frames += st["fast_frames"]
        pipe.udp_other_overflow += st["udp_other_overflow"]
        pipe.snapped_frames += st["snapped_frames"]
        pipe.snapped_max = max(pipe.snapped_max, st["snapped_max"])
        if st["snapped_first"] is not None:
            first = tuple(st["snapped_first"])
            pipe.snapped_first = first if pipe.snapped_first is None else min(pipe.snapped_first, first)
        for outer, (n, first) in st["encapsulated"].items():
            seen = pipe.encapsulated.setdefault(outer, [0, first])
            seen[0] += n
            seen[1] = min(seen[1], first)
        r["_state"] = state
    _check_independent(results)
    for n, (_w, _s, _i, t) in enumerate(sorted(tcp, key=lambda x: x[:3])):
        pipe.tcp[n] = t
    for n, (_w, _s, _i, t) in enumerate(sorted(udp, key=lambda x: x[:3])):
        pipe.udp[n] = t
    for n, (_w, _s, _i, v) in enumerate(sorted(other, key=lambda x: x[:3])):
        pipe.udp_other[n] = v
    pipe.icmp_unreachable.sort(key=lambda u: u["frame"])
    del pipe.icmp_unreachable[1000:]
    bounded(pipe.failed_connects)
    pipe.dns.trim()
    pipe.last_ts = results[0]["last_ts"]
    analysis = Analysis()
    analysis.captures = results[0]["captures"]
    build_sessions(analysis, pipe, gateways or [])
    return analysis, pipe


def _check_independent(results: list[dict]) -> None:
    """Raise ParallelFallback when a flow's analysis in one shard would have used another shard's flows."""
    if len(results) < 2:
        return
    key_shard: dict = {}
    for r in results:
        for sid in r["_state"]["dtls_keys"]:
            if key_shard.setdefault(sid, r["shard"]) != r["shard"]:
                # one process keeps the last CONNECT's keys for the id, and groups every flow of it there
                raise ParallelFallback("the same DTLS session id was given by CONNECTs between different addresses")
    ports = {r["shard"]: _dtls_ports(r["_state"]) for r in results}
    for r in results:
        st = r["_state"]
        for _w, flow in st["udp"]:
            sid = flow.session_id
            if sid and flow.keys_source is None and key_shard.get(sid, r["shard"]) != r["shard"]:
                raise ParallelFallback("a DTLS flow's keys come from a CONNECT between other addresses")
            first = getattr(flow, "first_record", None) or {}
            if first.get("content_type") != 22:
                # who is the server came from the ports of 443 and every CONNECT's DTLS (Pipeline.
                # _dtls_sender_is_server): a port only other shards' CONNECTs name could have changed it
                others = set().union(*(ports[s] for s in ports if s != r["shard"])) - {443}
                if {flow.client[1], flow.server[1]} & others:
                    raise ParallelFallback("a DTLS flow starts without a handshake on a port another shard's "
                                           "CONNECT named")
        for _w, conn in st["tcp"]:
            tls = getattr(conn, "tls", None)
            if getattr(tls, "resumed", False):
                raise ParallelFallback("a TLS session is resumed (the session cache spans connections)")


def _dtls_ports(state: dict) -> set[int]:
    """Every port a shard's CONNECTs could have named for DTLS: their servers' ports and X-DTLS-Port answers."""
    out = {info.connection.server[1] for info in state["dtls_keys"].values() if info.connection is not None}
    for _w, conn in state["tcp"]:
        for ex in getattr(conn, "exchanges", ()):
            if ex.request.method == "CONNECT" and ex.response is not None:
                try:
                    out.add(int(ex.response.headers.get("X-DTLS-Port") or 0))
                except ValueError:
                    pass
    return out


@few_collections()
def analyze_paths_parallel(paths, keylogs, rsa_keys, jobs: int, *, inner_sink=None, gateways=None,
                           fast_lanes: bool = True, max_flows: int = 1 << 16, reading: dict | None = None,
                           progress=None):
    """The `Analysis` of ``paths`` over ``jobs`` processes (this one included); raises ParallelFallback when the
    capture must be analysed in one process, InputError when it cannot be read. ``reading``, if given, gets
    ``mode``: "indexed" (each process walked a part of the files, then read its own frames) or "walked" (each
    process read the files whole). ``progress(frames)``, if given, is called as the shards go on with the frames
    they analysed so far, all processes together (the CLI's progress line), last with the capture's frame count."""
    # the process pool's modules only here: `acflow analyze` on one core never loads them (~25 ms of start-up)
    import multiprocessing  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from .analyze import load_keys  # noqa: PLC0415

    clock = time.perf_counter
    t0 = clock()
    keys, _info = load_keys(keylogs, rsa_keys)
    base = {"paths": [str(p) for p in paths], "keylogs": [str(k) for k in keylogs or ()],
            "rsa_keys": [str(k) for k in rsa_keys or ()], "nshards": jobs, "table": None,
            "inner": None, "fast_lanes": fast_lanes, "max_flows": max_flows, "window": _WINDOW}
    methods = multiprocessing.get_all_start_methods()
    # fork when this process has no other thread (the CLI); else a fork server (started once, children forked
    # from it with acflow already imported), else spawn
    method = "fork" if threading.active_count() == 1 and "fork" in methods else \
        "forkserver" if "forkserver" in methods else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(["analyzer.parallel", "analyzer.analyze"])
    heads = [head_of(p) for p in paths]
    with tempfile.TemporaryDirectory(prefix="acflow-jobs-") as tmp:
        if inner_sink is not None:
            base["inner"] = tmp
        # the objects this process holds so far are frozen out of the collector while the workers are forked: a
        # collection in a worker would otherwise write to (and so copy) every page of them (unfrozen when this
        # function's `few_collections` block ends)
        gc.freeze()
        counts = ctx.Array("Q", jobs, lock=False) if progress is not None else None
        results, t3 = _run_pool(ctx, jobs, counts, progress, paths, heads, base, reading, clock, t0, tmp)
        analysis, _pipe = merge(results, keys, paths, gateways)
        if reading is not None:  # where the time went (wall seconds; the shards' own CPU seconds)
            reading["seconds"]["merge"] = round(clock() - t3, 4)
            reading["seconds"]["shard_cpu"] = [r["cpu"] for r in sorted(results, key=lambda r: r["shard"])]
        if inner_sink is not None:
            # (capture, frame being processed, shard, order): each spool is sorted, so is their merge
            for p in heapq.merge(*(_spooled(r["inner"]) for r in results), key=lambda p: p[:4]):
                inner_sink(p[4], p[5], p[6], p[7], p[8])
    return analysis


def _run_pool(ctx, jobs, counts, progress, paths, heads, base, reading, clock, t0, spill):
    """Stages 1 and 2 of `analyze_paths_parallel` (its process pool): the shards' results and when they ended; the
    index parts are written to files in the directory ``spill`` (`_spilled`)."""
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait  # noqa: PLC0415

    pool = {"initializer": _share_counts, "initargs": (counts,)} if counts is not None else {}
    with ProcessPoolExecutor(max_workers=jobs - 1, mp_context=ctx, **pool) as ex:
        plans = None
        t1 = clock()
        if all(h is not None for h in heads):
            # stage 1: every process indexes a part of every file (each block is walked once in all)
            part_jobs = [{"path": str(p), "head": h[0], "part": k, "parts": jobs if h[1] >= INDEX_MIN_BYTES
                          else 1, "file": i, "window": _WINDOW, "spill": spill}
                         for i, (p, h) in enumerate(zip(paths, heads))
                         for k in range(jobs if h[1] >= INDEX_MIN_BYTES else 1)]
            mine = [j for n, j in enumerate(part_jobs) if n % jobs == 0]
            futures = [(j, ex.submit(index_part, j)) for n, j in enumerate(part_jobs) if n % jobs]
            parts = {(j["file"], j["part"]): index_part(j) for j in mine}
            parts.update({(j["file"], j["part"]): f.result() for j, f in futures})
            planned = plan_index(parts, heads, jobs)
            del parts
            if planned is not None:
                plans, base["table"] = planned
        if plans is None:  # walked: the buckets balanced by the traffic of the capture's first frames
            base["table"], _per = assign(bucket_weights(sample_pairs(paths)), jobs)
        # stage 2: the shards, each reading its own frames (indexed) or the whole file (walked)
        t2 = clock()
        if reading is not None:
            reading["mode"] = "walked" if plans is None else "indexed"
        jobs_list = [dict(base, shard=i, plan=plans[i] if plans is not None else None) for i in range(jobs)]
        futures = [ex.submit(run_shard, j) for j in jobs_list[1:]]
        first = run_shard(dict(jobs_list[0], in_process=True, progress=progress, counts=counts))
        if progress is not None:  # the other shards' frames while they go on
            while wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION).not_done:
                progress(sum(counts))
            progress(sum(counts))
        results = [first] + [f.result() for f in futures]
    t3 = clock()
    if reading is not None:
        reading["seconds"] = {"start": round(t1 - t0, 4), "index": round(t2 - t1, 4), "shards": round(t3 - t2, 4)}
    return results, t3


def analyze_with_jobs(paths, keylogs, rsa_keys, keys, key_info, jobs, *, inner_sink=None, progress=None,
                      gateways=None, warn=None):
    """`acflow analyze --jobs`: ``jobs`` None (auto, see `auto_jobs`) or a number; one process when 1, when the
    shards turn out to depend on each other, or when a worker process died (killed, out of memory): ``warn(message)``
    says so. (Nothing reaches ``inner_sink`` before the shards are merged, so the one-process run starts clean.)"""
    from .analyze import analyze_paths  # noqa: PLC0415

    n = auto_jobs(paths) if jobs is None else max(1, int(jobs))
    if n > 1:
        # (the process pool's modules only now: `--jobs auto` on a small capture never loads them, ~15 ms)
        from concurrent.futures.process import BrokenProcessPool  # noqa: PLC0415

        try:
            return analyze_paths_parallel(paths, keylogs, rsa_keys, n, inner_sink=inner_sink, gateways=gateways,
                                          progress=progress)
        except ParallelFallback as e:
            if warn is not None:
                warn(f"--jobs {n}: {e}; analysed in one process")
        except BrokenProcessPool:
            if warn is not None:
                warn(f"--jobs {n}: a worker process ended abruptly (killed, or out of memory); analysed in one "
                     "process")
    return analyze_paths(paths, keys, key_info, inner_sink=inner_sink, progress=progress, gateways=gateways)
