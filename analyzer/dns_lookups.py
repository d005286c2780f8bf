"""DNS lookups seen in a capture (dissectors/dns.py reads each message): which names a client looked up and how the
server answered — the facts of "the client could not resolve the gateway's name" (AnyConnect: "unable to resolve
the host"), the first step of a connection, before any TCP.

`Lookups.note` takes every DNS datagram of the pipeline's other traffic (UDP port 53 or 5353); a lookup is a query
(client address and port, server, id, name, type) with its retransmissions and its answer. `failed` gives the names
no answer resolved. Bounded (`MAX_LOOKUPS`)."""
from __future__ import annotations

from dissectors.dns import RCODES, DNSMessage

MAX_LOOKUPS = 4096  # lookups kept (the first by capture order); a busy resolver's capture stays bounded


class Lookups:
    """The DNS lookups of a capture. ``entries``: key -> {client, server, name, type, queries: [(time, frame)],
    rcode (None: no answer), answers, answer_frame, answer_time, addresses (the answer's A/AAAA records)}."""

    def __init__(self) -> None:
        self.entries: dict[tuple, dict] = {}
        self.overflow = 0  # queries not kept (beyond MAX_LOOKUPS)

    def note(self, msg: DNSMessage, src: str, sport: int, dst: str, dport: int, ts: float, frame: int) -> None:
        if msg.response:
            e = self.entries.get((dst, dport, src, msg.id, msg.name, msg.qtype))
            if e is not None and e["rcode"] is None:
                e.update(rcode=msg.rcode, answers=msg.answers, answer_frame=frame, answer_time=ts,
                         addresses=list(msg.addresses))
            return
        key = (src, sport, dst, msg.id, msg.name, msg.qtype)
        e = self.entries.get(key)
        if e is None:
            if len(self.entries) >= MAX_LOOKUPS:
                self.overflow += 1
                return
            e = self.entries[key] = {"client": src, "server": dst, "name": msg.name, "type": msg.qtype_name,
                                     "queries": [], "rcode": None, "answers": 0, "answer_frame": None,
                                     "answer_time": None, "addresses": []}
        if len(e["queries"]) < 16:
            e["queries"].append((ts, frame))

    def merge(self, other: dict) -> None:
        """Another shard's `entries` (analyzer/parallel.py: a lookup's datagrams are all in one shard); `trim`
        after the last."""
        for k, e in other.items():
            self.entries.setdefault(k, e)

    def trim(self) -> None:
        """Keep the first `MAX_LOOKUPS` by their first query, as one pass over the capture keeps them."""
        if len(self.entries) > MAX_LOOKUPS:
            keep = sorted(self.entries.items(), key=lambda kv: kv[1]["queries"][0])[:MAX_LOOKUPS]
            self.overflow += len(self.entries) - MAX_LOOKUPS
            self.entries = dict(keep)


def failed(entries: dict) -> list[dict]:
    """The names whose lookups (A, AAAA, any type) got no address: every lookup of the name by that client went
    unanswered, or was answered with an error (NXDOMAIN, SERVFAIL, REFUSED) or no record. One item per (client, name)
    in the order of their first query: {client, name, server(s), types, answer ("NXDOMAIN", "SERVFAIL", "no record",
    "no answer", several joined by '/'), queries, frames (queries and answers, the first 10), time}."""
    by_name: dict[tuple, list[dict]] = {}
    for e in sorted(entries.values(), key=lambda e: e["queries"][0] if e["queries"] else (0.0, 0)):
        if not e["queries"] or e["name"].endswith(".local") or e["name"].endswith(".arpa"):
            continue  # (multicast DNS and reverse lookups: no gateway's name)
        by_name.setdefault((e["client"], e["name"]), []).append(e)
    out = []
    for (client, name), es in by_name.items():
        if any(e["rcode"] == 0 and e["answers"] for e in es):
            continue
        if not any(e["type"] in ("A", "AAAA") for e in es):
            continue
        answers = []
        for e in es:
            a = ("no answer" if e["rcode"] is None else "no record" if e["rcode"] == 0 else
                 RCODES.get(e["rcode"], f"RCODE {e['rcode']}"))
            if a not in answers:
                answers.append(a)
        frames = sorted({f for e in es for _t, f in e["queries"]} | {e["answer_frame"] for e in es
                                                                      if e["answer_frame"] is not None})
        out.append({"client": client, "name": name, "servers": sorted({e["server"] for e in es}),
                    "types": sorted({e["type"] for e in es}), "answer": "/".join(answers),
                    "queries": sum(len(e["queries"]) for e in es), "frames": frames[:10],
                    "time": es[0]["queries"][0][0]})
    return out
