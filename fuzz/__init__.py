"""Fuzzing acflow's parsers with inputs seeded from the real lab captures (``samples/``).

``python -m fuzz --minutes N [--family F ...]`` (what ``make fuzz`` runs) fuzzes each parser family for N minutes
in total, families in parallel (one process per CPU), and exits non-zero when an input crashed a parser. Every
crashing input is saved under ``fuzz/crashes/<family>/`` (see :mod:`fuzz.__main__`); turn it into a regression
test by copying it to ``tests/corpus/regressions/<family>/`` (``tests/test_corpus.py`` replays that directory).

Families (:data:`FAMILIES`, targets in :mod:`fuzz.targets`):

========== =========================================================================================
pcap       ``dissectors.pcapfile.PcapParser`` — pcap/pcapng, sections, IDB options, DSB; any chunking
packet     ``dissectors.packet.decode`` + IPv4 defragmentation + ``dissectors.flows.FlowTable`` reassembly
tls        ``dissectors.tls.TLSConnection`` with every sample's keys (decryption paths run), gaps, exporter
tls-inner  the same, but the samples' TLS 1.3 records are mutated *before* encryption with their real keys
           (hostile EncryptedExtensions/Certificate/Finished/KeyUpdate/alerts/HTTP reach the parsers)
dtls       ``dissectors.dtls.DTLSConnection`` with the DTLS keys the samples' CONNECT exchanges give
http       ``dissectors.http.HTTPStream`` (then CSTP) on decrypted streams, plus header/body redaction
cstp       ``dissectors.cstp.CSTPFramer`` (identity, LZS, LZ4) and the inner-packet / DTLS-payload helpers
aggauth    ``dissectors.aggauth`` config-auth XML parsing and ``dissectors.redact`` (secrets must vanish)
keylog     ``dissectors.keylog.parse_keylog`` / ``KeyStore`` (round trip; errors never echo a secret)
pipeline   the whole analysis (``analyzer.driver.Analyzer`` fed a capture file) then every renderer
pipeline-  the same on a capture rebuilt around a sample's TLS 1.3 connection whose *plaintext* was mutated and
inner      re-encrypted: hostile HTTP headers, XML, CONNECT/X-DTLS-* headers and CSTP frames reach analyzer/
========== =========================================================================================

Engines: libFuzzer through atheris (``pip install atheris``: coverage-guided, structure-aware custom mutators)
when it imports, else a built-in mutator loop (no coverage feedback, same mutators, same targets).
"""

FAMILIES = ("pcap", "packet", "tls", "tls-inner", "dtls", "http", "cstp", "aggauth", "keylog", "pipeline",
            "pipeline-inner")
