"""Lab scenarios: one real openconnect client against one real ocserv gateway, per scenario.

A scenario is data: gateway configuration overrides, client options and the actions taken once the tunnel is
up. To add one, append a `Scenario(...)` to `SCENARIOS` (see the README section "Adding a lab scenario").
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .client import USER_PASSWORD

# TLS 1.3 allowed (GnuTLS priority strings, as ocserv's tls-priorities takes them).
PRIO_TLS13 = "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1"
# TLS 1.2 only, RSA key exchange only: decryptable with the gateway's private key.
PRIO_TLS12_RSA = "NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA"


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    gateway: dict = field(default_factory=dict)  # ocserv.conf overrides (key -> value or list of values; None: removed)
    client_args: tuple[str, ...] = ()
    password: str = USER_PASSWORD  # the password the client types (the user's real one is USER_PASSWORD)
    groups: tuple[str, ...] = ()  # groups the lab user belongs to (ocserv plain passwd)
    authgroup: str | None = None  # openconnect --authgroup
    block_udp: bool = False  # nftables drop of UDP in the gateway namespace
    # a fault on the path, made by nftables (lab.netns.Lab.path_fault): TCP to the gateway's port 443 "drop"ped,
    # "reset" or rejected by "icmp" (the gateway never reached); a loss at the client's way in ("big-in": the
    # gateway's TCP segments over 1200 bytes, "udp-in": its UDP, "synack-in": its TCP); "big": the gateway's TCP
    # segments over 1200 bytes lost on their way out (a path MTU black hole)
    path_fault: str | None = None
    # the client resolves the gateway's name through a DNS server at the gateway's address (no openconnect
    # --resolve): "nxdomain" (lab.dnsish nxserver: the name does not exist), "unanswered" (UDP 53 dropped) or
    # "no-aaaa" (lab.dnsish noaaaa: A answered, AAAA queries dropped — the lookup waits for them)
    dns: str | None = None
    capture_side: str = "client"
    # the TTL of the gateway's TCP packets from port 443 (nftables in its namespace; resets excepted): a gateway
    # whose packets arrive with another TTL than a device in between would give its own (middlebox-reset)
    gateway_ttl: int | None = None  # where dumpcap captures: the client's veth, or "gateway": the gateway's
    outer_mtu: int | None = None  # veth MTU
    force_tun_mtu: int | None = None  # the client's script sets this MTU on the tun instead of the granted one
    pings: int = 5  # small pings (56 data bytes) through the tunnel
    big_pings: int = 0  # then this many pings of big_ping_size data bytes
    big_ping_size: int = 1300
    big_ping_df: bool = True
    hold: float = 0.0  # seconds to keep the tunnel up after the pings (e.g. to see DTLS retries)
    expect_connect: bool = True
    wait_dtls: bool = True  # wait for "Established DTLS" before pinging
    downloader: bool = False  # --authenticate, curl GET of the profile, then --cookie connect
    client_sysctls: dict = field(default_factory=dict)  # sysctl settings in the client namespace
    gateway_sysctls: dict = field(default_factory=dict)  # sysctl settings in the gateway namespace
    pki: dict = field(default_factory=dict)  # pki.make_pki keyword overrides (cn, san_dns, san_ip, not_after_days…)
    # What the lab does after the first pings, in order (see runner.STEP_OPS): ("block-all",), ("unblock",),
    # ("wait-client", regex, timeout), ("sleep", seconds), ("ping", count), ("kill-tcp",), ("snat-udp", ports),
    # ("other-traffic",)…
    steps: tuple[tuple, ...] = ()
    url_path: str = ""  # appended to the gateway URL (a group URL, e.g. "engineering")
    # a third namespace on the client's LAN with unrelated servers (lab.othertraffic), used by ("other-traffic",)
    other_traffic: bool = False
    # the client's network holds it at a captive portal (lab.portal, in a third namespace on its LAN) whose sign-in
    # page nobody accepted: the operating system's connectivity check (plain HTTP) is redirected to the sign-in page,
    # then openconnect tries the gateway. "dns": the portal's resolver answers every name with the portal's address,
    # and the portal answers HTTPS with a certificate of its own name; "firewall": names resolve as they should, the
    # portal answers plain HTTP to any address, TCP to the gateway's port 443 is dropped
    captive_portal: str | None = None
    # the client authenticates with a certificate chain from a lab client PKI (lab.pki.make_client_pki keyword
    # arguments, e.g. {"intermediates": 2}) in an `openconnect --authenticate -c -k` run, then connects with the
    # cookie and no certificate (a second TLS connection)
    client_cert: dict | None = None
    # the client reaches the gateway through an HTTP proxy (lab.proxy, in the gateway namespace on PROXY_PORT):
    # openconnect --proxy; the TLS connection is tunnelled in the proxy's CONNECT
    proxy: bool = False
    proxy_basic: str | None = None  # USER:PASSWORD the proxy asks for (407 first; openconnect --proxy-auth=basic)
    # a TLS-inspecting middlebox on the path (lab.inspect in the gateway namespace — on the router when the scenario
    # has one —, the client's TCP to port 443 redirected to it by nftables): it ends the client's TLS with a
    # certificate for the gateway's name from its own CA — which the client trusts (openconnect --cafile that CA), as
    # managed laptops trust their firewall's — and relays to the gateway over a TLS session of its own; UDP passes
    # untouched
    tls_inspection: bool = False
    # the client namespace's resolver is a DNS server outside the tunnel (lab.dnsish nxserver at the gateway's outer
    # address: NXDOMAIN for every name); openconnect still reaches the gateway by --resolve, and the lab's
    # vpnc-script leaves the resolver alone — as a client whose DNS settings the VPN did not take over
    outside_dns: bool = False
    # "vxlan": the client-gateway link runs in a VXLAN overlay and the capture is of its underlay (every packet
    # inside VXLAN, as cloud traffic mirroring delivers them; Lab.use_vxlan_underlay)
    underlay: str | None = None
    # the client verifies the gateway against the lab CA (openconnect --cafile ca.pem --non-inter) instead of
    # pinning its key: a certificate it cannot verify ends the connection
    trust_ca: bool = False
    # a second dumpcap on the client's tun device (tun0) from the moment the vpnc-script configured it:
    # tunnel-side.pcapng, the capture a user takes on the VPN's adapter by mistake (the traffic inside the tunnel)
    tunnel_capture: bool = False
    # a second openconnect in the client namespace — another user behind the same address, as behind a NAT —
    # started this many seconds after the first, on tun1 (its vpnc-script sets no route), logging to client2.log;
    # both log in as USER, both are interrupted (DISCONNECT) at the end, the second first
    second_client: float | None = None
    # a router between client and gateway (lab.netns.Lab.use_router) and both ends captured: capture.pcapng on the
    # client's veth, gateway-side.pcapng on the gateway's — two captures of the same traffic, with what the router
    # does in between —, and router.pcapng: the router's own capture of its two veths (client side first), one file.
    # Its rules, in order (runner.ROUTER_RULES): "nat" (the client's address translated to 198.18.0.3; "nat-tcp" and
    # "nat-udp": its TCP to 198.18.0.3, its UDP to 198.18.0.4, a NAT without paired pooling), "drop-udp"
    # (the client's UDP to port 443 dropped: a firewall that blocks DTLS), "loss:N" (N % of the forwarded packets
    # dropped at random, both ways), "mss:N" (the MSS of TCP SYNs lowered to N), "mtu:N" (the router's link toward the
    # client N bytes, its ICMP 'fragmentation needed' dropped: a path MTU black hole)
    router: tuple[str, ...] | None = None

    def ping_plan(self) -> list[tuple[int, int, bool]]:
        """(count, data size, DF) for each ping run, in order."""
        plan = [(self.pings, 56, False)] if self.pings else []
        if self.big_pings:
            plan.append((self.big_pings, self.big_ping_size, self.big_ping_df))
        return plan


#: what the client tries inside the tunnel in the inner-unreachable scenarios: a blackhole and a prohibit route in the
#: gateway's namespace, TCP to both, a lookup at the tunnel's DNS address where nothing listens
INNER_UNREACHABLE_STEPS = (("inner-route", "blackhole", "198.19.0.77"), ("inner-route", "prohibit", "198.19.0.78"),
                           ("inner-tcp", "198.19.0.77", 8080), ("inner-tcp", "198.19.0.78", 8080),
                           ("inner-dns", "198.19.0.1", "intranet.acflow.test"))
#: the route-outside-tunnel scenarios: the tunnel's DNS answering 198.19.1.10, a route of the client's own network
#: inside the tunnel's, a default route, TCP to both sides of it
ROUTE_OUTSIDE_STEPS = (("tunnel-dns", "198.19.1.10"), ("client-route", "198.19.0.64/26"), ("client-route", "default"),
                       ("inner-tcp", "198.19.0.77", 8080), ("inner-dns", "198.19.0.1", "app.corp.acflow.test"),
                       ("inner-tcp", "198.19.1.10", 8080))


#: the steps after a client's sleep (or freeze): it reconnects with its cookie, DTLS comes up, pings go through
#: IPv6 off in a namespace (before its tun device exists): a tun then sends no router solicitations of its own, the
#: only packets inside an otherwise unused tunnel
NO_IPV6 = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}
BACK_AFTER_SLEEP = (("wait-client", r"^CSTP connected", 90), ("wait-client", r"^Established DTLS", 20), ("ping", 3))

SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("baseline", "TLS 1.3, DTLS 1.2 with PSK-NEGOTIATE, 5 pings, clean disconnect",
             gateway={"tls-priorities": PRIO_TLS13}),
    Scenario("tunnel-side", "the baseline, captured a second time on the client's tun device (tun0) as a user "
             "captures on the VPN adapter by mistake: tunnel-side.pcapng holds the pings inside the tunnel, none of "
             "the VPN's own TLS and DTLS", gateway={"tls-priorities": PRIO_TLS13}, tunnel_capture=True),
    Scenario("dtls-blocked", "UDP dropped at the gateway: two rounds of DTLS ClientHellos, traffic over CSTP",
             gateway={"tls-priorities": PRIO_TLS13}, block_udp=True, wait_dtls=False, pings=10, hold=88.0),
    Scenario("legacy-dtls", "gateway without PSK: X-DTLS-Master-Secret session resumption, DTLS 1.2",
             gateway={"tls-priorities": PRIO_TLS13, "dtls-psk": "false", "dtls-legacy": "true"}),
    Scenario("legacy-dtls09", "gateway without PSK, client limited to Cisco's pre-standard DTLS 0x0100 "
             "(AES128-SHA)",
             gateway={"tls-priorities": PRIO_TLS13, "dtls-psk": "false", "dtls-legacy": "true"},
             client_args=("--dtls-ciphers=AES128-SHA",)),
    Scenario("group-select", "three groups with aliases; the client picks a non-default one",
             gateway={"tls-priorities": PRIO_TLS13,
                      "select-group": ["sales[Sales Team]", "engineering[Engineering VPN]", "ops[Operations]"],
                      "default-select-group": "DEFAULT"},
             groups=("sales", "engineering", "ops"), authgroup="Engineering VPN"),
    Scenario("mtu", "small outer MTU and gateway mtu: granted MTU differs from the request; inner packets "
             "bigger than the tunnel MTU",
             gateway={"tls-priorities": PRIO_TLS13, "mtu": "1100"}, outer_mtu=1300,
             client_args=("--base-mtu=1300",), force_tun_mtu=1400, big_pings=3, big_ping_size=1300),
    Scenario("auth-fail", "wrong password: the gateway rejects the login",
             gateway={"tls-priorities": PRIO_TLS13}, password="wrong-password", expect_connect=False, pings=0),
    Scenario("gateway-unreachable", "TCP to the gateway's port 443 dropped (a firewall that drops, a dead route): "
             "the client's SYNs get no answer, openconnect gives up ('Failed to connect to host'); no TLS",
             path_fault="drop", expect_connect=False, pings=0,
             # (the client gives up after ~3 s of retransmitted SYNs instead of Linux's minutes)
             client_sysctls={"net.ipv4.tcp_syn_retries": "2"}),
    Scenario("gateway-refused", "TCP to the gateway's port 443 answered by a reset (nothing listening there, the "
             "VPN service not enabled on that interface): openconnect gives up at once; no TLS",
             path_fault="reset", expect_connect=False, pings=0),
    Scenario("gateway-filtered", "TCP to the gateway's port 443 rejected with ICMP 'communication administratively "
             "prohibited' (a firewall's reject rule): openconnect gives up at once; no TLS",
             path_fault="icmp", expect_connect=False, pings=0),
    Scenario("path-mtu-blackhole", "the gateway's TCP segments longer than 1200 bytes are lost on the way to the "
             "client without an ICMP 'fragmentation needed' (a path MTU black hole): the TCP connection comes up and "
             "the ClientHello arrives, but the gateway's handshake flight (its certificate) never does",
             path_fault="big", expect_connect=False, pings=0),
    Scenario("path-mtu-blackhole-gateway-side", "path-mtu-blackhole captured on the gateway's interface (the loss on "
             "the client's side of the path): the gateway's full-size segments of its handshake flight leave, are "
             "never acknowledged and are sent again",
             path_fault="big-in", capture_side="gateway", expect_connect=False, pings=0),
    Scenario("gateway-name-unknown", "the client resolves the gateway's name through a DNS server that answers "
             "NXDOMAIN: getaddrinfo fails, openconnect never connects; the capture holds its DNS queries (A and "
             "AAAA, retried) and the answers, no TCP",
             dns="nxdomain", expect_connect=False, pings=0),
    Scenario("captive-portal", "a hotel's guest network before its sign-in page was accepted: its DNS server answers "
             "every name with the portal's address (198.18.0.5); the laptop's connectivity check (GET "
             "http://connectivity-check.ubuntu.com/) is answered 302 to http://portal.hotspot.test/login, and "
             "openconnect's TLS to vpn.acflow.test reaches the portal, whose certificate (its own name, "
             "self-signed) the client refuses; no login, no tunnel",
             captive_portal="dns", expect_connect=False, pings=0),
    Scenario("captive-portal-firewall", "a guest network's captive portal that lets names resolve but answers "
             "every plain HTTP request itself (the connectivity check to 198.18.0.4:80 answered 302 to "
             "http://portal.hotspot.test/login) and drops everything else: the client's SYNs to the gateway's port "
             "443 go unanswered until it gives up",
             captive_portal="firewall", expect_connect=False, pings=0,
             client_sysctls={"net.ipv4.tcp_syn_retries": "2"}),
    Scenario("dns-slow-aaaa", "the client's DNS server answers the gateway's A query at once but drops its AAAA "
             "query (a resolver or firewall that loses the queries for IPv6 addresses): glibc waits for it (timeout 2 "
             "s, 2 attempts) before it hands openconnect the address; then a baseline session",
             dns="no-aaaa", gateway={"tls-priorities": PRIO_TLS13}, pings=3),
    Scenario("dns-unanswered", "the client's DNS server never answers (UDP 53 dropped at it): the queries are "
             "retried until getaddrinfo gives up; no TCP",
             dns="unanswered", expect_connect=False, pings=0),
    Scenario("return-path-blocked", "captured on the gateway's interface: the client's SYNs arrive and the gateway "
             "answers, but its packets never reach the client (dropped on the client's way in: asymmetric routing, "
             "a firewall on the way back); the client sends its SYN again until it gives up",
             path_fault="synack-in", capture_side="gateway", expect_connect=False, pings=0,
             client_sysctls={"net.ipv4.tcp_syn_retries": "2"}),
    Scenario("dtls-return-blocked", "captured on the gateway's interface: the client's DTLS ClientHellos arrive and "
             "the gateway answers them (ServerHello…), but its UDP never reaches the client (dropped on the client's "
             "way in): the client sends its hellos again, gives up on DTLS, and the tunnel runs over CSTP",
             gateway={"tls-priorities": PRIO_TLS13}, path_fault="udp-in", capture_side="gateway", wait_dtls=False,
             pings=10, hold=20.0),
    Scenario("middlebox-reset", "a device between client and gateway resets the tunnel's TCP connection: nftables "
             "in the gateway namespace answers the client's next CSTP packet (a keepalive: gateway keepalive = 2) "
             "with a TCP reset ocserv never sent, TTL 64, while the gateway's own packets leave with TTL 200; the "
             "client's immediate reconnect is reset too, the next one (rule removed) connects with its cookie",
             gateway={"tls-priorities": PRIO_TLS13, "keepalive": "2"}, pings=3, gateway_ttl=200,
             steps=(("reset-once",), ("sleep", 4.0), ("unreset",), ("wait-client", r"^CSTP connected", 30),
                    ("wait-client", r"^Established DTLS", 20), ("ping", 3))),
    Scenario("tls12-rsa", "TLS 1.2 with RSA key exchange (decryptable with the gateway's private key), "
             "DTLS PSK-NEGOTIATE from the TLS 1.2 exporter",
             gateway={"tls-priorities": PRIO_TLS12_RSA}),
    Scenario("downloader", "gateway offers a client profile: --authenticate, the profile fetched by a "
             "separate TLS session with the webvpn cookie, then --cookie connect",
             gateway={"tls-priorities": PRIO_TLS13}, downloader=True),
    Scenario("dpd-loss", "gateway dpd = 5; all traffic between the peers dropped: the client declares the peer "
             "dead, two reconnect attempts time out; the block is lifted and the third (same cookie, new TLS and "
             "DTLS) succeeds",
             gateway={"tls-priorities": PRIO_TLS13, "dpd": "5"},
             # each reconnect attempt gives up after ~3 s of unanswered SYNs (instead of Linux's ~2 min), so
             # openconnect's back-off between attempts (10 s, then 20 s) shows within the run
             client_sysctls={"net.ipv4.tcp_syn_retries": "1"},
             steps=(("block-all",), ("wait-client", r"Dead Peer Detection detected dead peer", 30),
                    ("wait-client", r"^sleep 10s", 20), ("wait-client", r"^sleep 20s", 30), ("unblock",),
                    ("wait-client", r"^CSTP connected", 60), ("wait-client", r"^Established DTLS", 20),
                    ("ping", 5))),
    Scenario("client-roams", "a laptop that moves to another network mid-session: after the pings the client's "
             "address changes from 198.18.0.2 to 198.18.0.3 (gateway dpd = 5); the old connections go silent, "
             "openconnect declares the peer dead and reconnects from the new address with its cookie (new TLS "
             "connection, new DTLS handshake), then pings again",
             gateway={"tls-priorities": PRIO_TLS13, "dpd": "5"},
             steps=(("move-client", "198.18.0.3"), ("wait-client", r"Dead Peer Detection detected dead peer", 30),
                    ("wait-client", r"^CSTP connected", 60), ("wait-client", r"^Established DTLS", 20),
                    ("ping", 5))),
    Scenario("laptop-sleeps", "a laptop that sleeps with the tunnel up (gateway dpd = 5): after the pings its "
             "network and openconnect stop for 45 s — the capture on it has nothing in that time; the gateway gives "
             "the silent session up; on waking openconnect finds its connections dead and reconnects with its cookie "
             "(new TLS and DTLS), then pings again",
             gateway={"tls-priorities": PRIO_TLS13, "dpd": "5"},
             steps=(("suspend-client", 45.0), *BACK_AFTER_SLEEP)),
    Scenario("vpn-client-hangs", "the VPN client hangs while the computer goes on (gateway dpd = 5): after the "
             "pings openconnect is stopped (SIGSTOP) for about 50 s while the client's other traffic (TLS, DTLS, DNS, "
             "HTTP to other servers) runs; the gateway gives the silent session up (its last DPD request and its FIN, "
             "which the client's kernel acknowledges); continued, openconnect reconnects with its cookie",
             gateway={"tls-priorities": PRIO_TLS13, "dpd": "5"}, other_traffic=True,
             steps=(("stop-client",), ("other-traffic",), ("sleep", 40.0), ("continue-client",), *BACK_AFTER_SLEEP)),
    Scenario("laptop-sleeps-gateway-side", "laptop-sleeps captured on the gateway's interface: the client's "
             "packets stop while the gateway goes on sending into the silence (tunnel traffic, a CSTP record sent "
             "again and again, unacknowledged) and gives the session up; then the client's packets return and it "
             "reconnects",
             gateway={"tls-priorities": PRIO_TLS13, "dpd": "5"}, capture_side="gateway",
             steps=(("suspend-client", 45.0), *BACK_AFTER_SLEEP)),
    Scenario("session-timeout", "gateway session-timeout = 30 (the longest a session may stay connected; ocserv "
             "checks every 30 s): after the pings the tunnel idles (DPDs, the tun's own packets) until ocserv "
             "disconnects the session at its next check and invalidates its cookie; openconnect logs 'Session "
             "terminated by server' and exits",
             gateway={"tls-priorities": PRIO_TLS13, "session-timeout": "30"},
             steps=(("client-exits", 90.0),)),
    Scenario("session-timeout-reconnect", "gateway session-timeout = 45: 10 s after the pings the client's TCP "
             "connection is aborted (ss -K) and openconnect reconnects with its cookie — the new CONNECT's answer "
             "gives the session's remaining time (X-CSTP-Session-Timeout-Remaining: ocserv counts it from each "
             "connection's start, so 45 again) —, then ocserv disconnects the session at that timeout, counted "
             "from the reconnect",
             gateway={"tls-priorities": PRIO_TLS13, "session-timeout": "45"},
             steps=(("sleep", 10.0), ("kill-tcp",), ("wait-client", r"^CSTP connected", 30),
                    ("wait-client", r"^Established DTLS", 20), ("ping", 3), ("client-exits", 90.0))),
    Scenario("idle-timeout", "gateway idle-timeout = 30 (no packet inside the tunnel for that long ends the session; "
             "ocserv checks every 30 s; DPDs and keepalives do not count): after the pings nothing inside the tunnel "
             "(IPv6 off in both namespaces: the tun devices send no router solicitations), only DPDs, until ocserv "
             "disconnects the idle session; openconnect exits",
             gateway={"tls-priorities": PRIO_TLS13, "idle-timeout": "30"},
             client_sysctls=NO_IPV6, gateway_sysctls=NO_IPV6,
             steps=(("client-exits", 120.0),)),
    Scenario("idle-timeout-gateway-side", "idle-timeout captured on the gateway's interface (as a gateway's own "
             "capture sees it): the gateway's DISCONNECT leaves first, the client's goodbye arrives after it",
             gateway={"tls-priorities": PRIO_TLS13, "idle-timeout": "30"}, capture_side="gateway",
             client_sysctls=NO_IPV6, gateway_sysctls=NO_IPV6,
             steps=(("client-exits", 120.0),)),
    Scenario("keepalive-dpd", "gateway keepalive = 6 below dpd = 10, UDP dropped at the gateway: the idle CSTP "
             "channel carries the client's keepalives (sent after 6 s without sending) and DPD requests (after "
             "10 s without receiving), some keepalives more than 9 s into the gateway's silence",
             gateway={"tls-priorities": PRIO_TLS13, "keepalive": "6", "dpd": "10"}, block_udp=True,
             wait_dtls=False, pings=2, steps=(("sleep", 25.0), ("ping", 2), ("sleep", 25.0))),
    Scenario("dpd-late-answer", "gateway dpd = 5, keepalive = 12; after the pings, 14 s of idle tunnel, then "
             "all traffic between the peers dropped: the client's CSTP DPD requests go unanswered, it declares "
             "the peer dead and reconnects (the first attempt times out); the block is lifted while TCP still "
             "retransmits the old connection's last DPD request: the gateway answers it late, the client (its "
             "socket closed) resets the connection",
             gateway={"tls-priorities": PRIO_TLS13, "keepalive": "12", "dpd": "5"},
             client_sysctls={"net.ipv4.tcp_syn_retries": "1"},
             steps=(("sleep", 14.0), ("block-all",), ("wait-client", r"Dead Peer Detection detected dead peer", 60),
                    ("wait-client", r"^sleep 10s", 30), ("unblock",),
                    ("wait-client", r"^CSTP connected", 60), ("wait-client", r"^Established DTLS", 20), ("ping", 3),
                    ("sleep", 20.0))),
    Scenario("reconnect", "the client's TCP connection is aborted (ss -K, RST) with the tunnel up: openconnect "
             "reconnects at once with its cookie, no loss of the session",
             gateway={"tls-priorities": PRIO_TLS13},
             steps=(("kill-tcp",), ("wait-client", r"^CSTP connected", 30), ("wait-client", r"^Established DTLS", 20),
                    ("ping", 5))),
    Scenario("nat-rebinding", "mid-session the client's UDP source port changes (nftables SNAT in the client "
             "namespace): DTLS records from a new port without a new handshake, DTLS dead peer, a new DTLS "
             "handshake, then a CSTP reconnect",
             gateway={"tls-priorities": PRIO_TLS13, "dpd": "5"},
             steps=(("snat-udp", "40000-40100"), ("ping", 5),
                    ("wait-client", r"DTLS Dead Peer Detection detected dead peer", 40),
                    ("wait-client", r"^Established DTLS", 15), ("sleep", 3.0), ("ping", 5))),
    Scenario("cert-wrong-name", "the gateway's certificate names another host (CN and SAN gw.elsewhere.test, no "
             "IP SAN) than the one the client connects to; openconnect accepts it by its pin (--servercert)",
             gateway={"tls-priorities": PRIO_TLS13},
             # the lab CA is trusted, so openconnect's verification names the fault instead of "signer not found"
             client_args=("--cafile=@CA_CERT@",),
             pki={"cn": "gw.elsewhere.test", "san_dns": ("gw.elsewhere.test",), "san_ip": False}),
    Scenario("cert-expired", "the gateway's certificate expired 30 days ago; openconnect accepts it by its pin "
             "(--servercert)",
             gateway={"tls-priorities": PRIO_TLS13},
             client_args=("--cafile=@CA_CERT@",),
             pki={"not_before_days": -400, "not_after_days": -30}),
    Scenario("client-cert-request", "TLS 1.2 (RSA key exchange): the gateway asks for a client certificate "
             "(CertificateRequest naming the lab CA, in the clear) but also takes passwords (auth plain + enable-auth "
             "certificate); the client sends an empty Certificate and logs in with its password",
             gateway={"tls-priorities": PRIO_TLS12_RSA, "enable-auth": '"certificate"', "ca-cert": "@CA_CERT@",
                      "cert-user-oid": "2.5.4.3"}),
    Scenario("mixed-traffic", "a baseline session (TLS 1.3, DTLS PSK-NEGOTIATE, pings, clean disconnect) with "
             "unrelated traffic from the same client during it: TLS to other servers on 8009, 5223, 4287 and 443 "
             "(self-signed certificates; HTTPS with curl), DTLS with HelloVerifyRequest on 3478, DNS on UDP 53, "
             "HTTP on 80",
             gateway={"tls-priorities": PRIO_TLS13}, pings=3, other_traffic=True,
             steps=(("other-traffic",), ("ping", 3))),
    Scenario("client-cert-chain", "TLS 1.2 (RSA key exchange): the gateway asks for a client certificate on "
             "both TLS connections; on the auth connection (--authenticate -c -k) openconnect sends a "
             "three-certificate chain (leaf, issuing CA, policy CA; not the root) and CertificateVerify and is "
             "logged in by its certificate, on the tunnel connection (--cookie-on-stdin, no -c) an empty Certificate",
             gateway={"tls-priorities": PRIO_TLS12_RSA, "enable-auth": '"certificate"', "cert-user-oid": "2.5.4.3",
                      "ca-cert": "@CLIENT_CA@"},
             client_cert={"intermediates": 2}),
    Scenario("group-url-unknown", "openconnect pointed at a group URL the gateway does not have "
             "(https://vpn.acflow.test/engineering): POST /engineering -> 404, then its fallback GET /engineering "
             "(a new TLS connection) -> 404; no login, no tunnel",
             gateway={"tls-priorities": PRIO_TLS13}, url_path="engineering", expect_connect=False, pings=0),
    Scenario("http-proxy", "a baseline session through an HTTP proxy (openconnect --proxy; lab.proxy on "
             "198.18.0.1:3128): the TLS connection runs inside the proxy's CONNECT vpn.acflow.test:443 (HTTP in the "
             "clear, then TLS 1.3); openconnect does not try DTLS through a proxy: the tunnel is CSTP only",
             gateway={"tls-priorities": PRIO_TLS13}, proxy=True, wait_dtls=False),
    Scenario("http-proxy-auth", "http-proxy with a proxy that asks for credentials: the first CONNECT is answered 407 "
             "Proxy Authentication Required (with a body), openconnect sends the CONNECT again on the same "
             "connection with Proxy-Authorization: Basic, 200, then TLS 1.3 as in http-proxy",
             gateway={"tls-priorities": PRIO_TLS13}, proxy=True, proxy_basic="labproxy:proxypass", wait_dtls=False),
    Scenario("vxlan-mirror", "baseline seen the way a cloud's traffic mirror (AWS, Azure) or a fabric uplink "
             "delivers it: the client-gateway link runs in a VXLAN overlay (VNI 4242, UDP 4789) and the capture is "
             "of the underlay, so every packet of the session is inside VXLAN; the overlay's MTU is 1450",
             gateway={"tls-priorities": PRIO_TLS13}, underlay="vxlan"),
    Scenario("cert-chain-missing", "the gateway's certificate is issued by an intermediate CA that the gateway does "
             "not send (installed without its chain); the client trusts only the root (openconnect --cafile, no "
             "pin): it cannot build the chain and closes the connection",
             gateway={"tls-priorities": PRIO_TLS13}, pki={"intermediate": "missing"}, trust_ca=True,
             expect_connect=False, wait_dtls=False, pings=0),
    Scenario("tls-inspection", "a baseline session through a TLS-inspecting firewall (lab.inspect: the client's TCP "
             "to port 443 redirected to it): the client's TLS ends at the middlebox, whose certificate for "
             "vpn.acflow.test is issued by its own CA (trusted by the client), and a second TLS session carries the "
             "login and the tunnel to ocserv. DTLS (PSK-NEGOTIATE) goes to the gateway directly, keyed from the "
             "client's TLS session, which the gateway never had: the handshake fails, the tunnel stays on CSTP",
             gateway={"tls-priorities": PRIO_TLS13}, tls_inspection=True, wait_dtls=False),
    Scenario("inner-unreachable", "connected, but servers inside the tunnel do not answer: after the pings the "
             "client tries TCP to 198.19.0.77:8080 (the gateway's side drops it: a blackhole route, as an ACL's "
             "drop), to 198.19.0.78:8080 (rejected: a prohibit route, ICMP administratively prohibited, as an ACL's "
             "reject), and looks up intranet.acflow.test at the tunnel's DNS server 198.19.0.1, where nothing "
             "listens (ICMP port unreachable); all of it inside the tunnel (route 198.19.0.0/24)",
             gateway={"tls-priorities": PRIO_TLS13},
             steps=INNER_UNREACHABLE_STEPS),
    Scenario("inner-unreachable-adapter", "inner-unreachable captured as support asks for it: on the client's "
             "network interface and, at the same time, on the VPN's adapter (tun0, tunnel-side.pcapng): the second "
             "file holds the client's packets inside the tunnel in the clear — what a capture without keys can "
             "still tell about 'connected, but I cannot reach the server'",
             gateway={"tls-priorities": PRIO_TLS13}, tunnel_capture=True,
             steps=INNER_UNREACHABLE_STEPS),
    Scenario("inner-unreachable-any", "inner-unreachable captured as a Linux user does with tcpdump -i any: dumpcap on "
             "the client namespace's 'any' device, one file holding the veth's packets and, once it is up, tun0's "
             "(Linux cooked capture, as dumpcap writes it: each packet names its device's type, a tun device's "
             "ARPHRD_NONE)",
             gateway={"tls-priorities": PRIO_TLS13}, capture_side="client-any",
             steps=INNER_UNREACHABLE_STEPS),
    Scenario("dns-outside-tunnel", "connected, but the client's lookups of the VPN's internal names go to its own DNS "
             "server outside the tunnel, which does not know them (NXDOMAIN): the gateway gives DNS 198.19.0.1, "
             "default domain acflow.test and split DNS corp.acflow.test, the client's resolver stays 198.18.0.1 "
             "(lab.dnsish nxserver); after the pings it looks up intranet.acflow.test and files.corp.acflow.test",
             gateway={"tls-priorities": PRIO_TLS13, "split-dns": "corp.acflow.test"}, outside_dns=True,
             steps=(("lookup", "intranet.acflow.test"), ("lookup", "files.corp.acflow.test"))),
    Scenario("route-outside-tunnel", "connected, but traffic for the VPN's servers leaves outside the tunnel: the "
             "gateway routes 198.19.0.0/24 into the tunnel (X-CSTP-Split-Include) and its DNS at 198.19.0.1 answers "
             "app.corp.acflow.test with 198.19.1.10, outside those routes. The client namespace has a route of its own "
             "network for 198.19.0.64/26 (a home network using the VPN's addresses, more specific than the tunnel's) "
             "and a default route: its TCP to 198.19.0.77:8080 goes out of its own interface, and after looking up "
             "app.corp.acflow.test through the tunnel its TCP to 198.19.1.10:8080 does too; neither is answered",
             gateway={"tls-priorities": PRIO_TLS13},
             steps=ROUTE_OUTSIDE_STEPS),
    Scenario("dtls-not-offered", "a gateway without DTLS (ocserv with no udp-port, as an ASA without 'anyconnect ssl "
             "dtls enable'): its CONNECT answer has no X-DTLS-Port, the client sends no DTLS, the pings and the "
             "tunnel run over TLS only",
             gateway={"tls-priorities": PRIO_TLS13, "udp-port": None}, wait_dtls=False, hold=3.0),
    Scenario("route-outside-tunnel-adapter", "route-outside-tunnel captured as support asks for it: on the client's "
             "veth and, at the same time, on its tun0 (tunnel-side.pcapng): without keys the adapter's packets hold "
             "the tunnel DNS's answer for app.corp.acflow.test, and the veth's the connection to it outside the tunnel",
             gateway={"tls-priorities": PRIO_TLS13}, tunnel_capture=True,
             steps=ROUTE_OUTSIDE_STEPS),
    Scenario("two-users-one-address", "two users behind one address (a NAT), logging in at the same moment: a second "
             "openconnect in the client namespace starts 50 ms after the first (its own tun1); both get tunnels with "
             "DTLS, the first's carries the pings; the second disconnects first",
             gateway={"tls-priorities": PRIO_TLS13}, second_client=0.05, hold=2.0),
    Scenario("rekey", "a session longer than the gateway's rekey time (ocserv rekey-time = 20, rekey-method = ssl): "
             "the client renews the keys of its channels while the tunnel carries pings",
             gateway={"tls-priorities": PRIO_TLS13, "rekey-time": "20", "rekey-method": "ssl"},
             steps=(("sleep", 12.0), ("ping", 2), ("sleep", 12.0), ("ping", 2), ("sleep", 12.0), ("ping", 2))),
    Scenario("rekey-new-tunnel", "a session longer than the gateway's rekey time with rekey-method = new-tunnel "
             "(ocserv rekey-time = 20): at the rekey time the client discards its TLS connection and sets the tunnel "
             "up again on a new one (CONNECT with its cookie), as the ASA's default 'new-tunnel' rekey has it — a "
             "scheduled reconnect, not a lost connection",
             gateway={"tls-priorities": PRIO_TLS13, "rekey-time": "20", "rekey-method": "new-tunnel"},
             steps=(("sleep", 12.0), ("ping", 2), ("sleep", 12.0), ("ping", 2), ("sleep", 12.0), ("ping", 2))),
    Scenario("cisco-ua", "a baseline session where openconnect presents itself as Cisco AnyConnect for macOS "
             "(User-Agent 'AnyConnect Darwin_i386 4.10.07061', device-id mac-intel, version 4.10.07061)",
             gateway={"tls-priorities": PRIO_TLS13},
             client_args=("--os=mac-intel", "--useragent=AnyConnect Darwin_i386 4.10.07061",
                          "--version-string=4.10.07061")),
    Scenario("both-sides-dtls-blocked", "a NAT firewall between client and gateway drops the client's UDP to port 443: "
             "DTLS never comes up, traffic over CSTP; captured on both sides of it (capture.pcapng at the client, "
             "gateway-side.pcapng at the gateway)", gateway={"tls-priorities": PRIO_TLS13},
             router=("nat", "drop-udp"), wait_dtls=False, pings=10, hold=6.0),
    Scenario("both-sides-reset", "a NAT firewall between client and gateway resets the client's tunnel connection in "
             "the gateway's name (at the client's next CSTP keepalive: gateway keepalive = 2); openconnect reconnects "
             "with its cookie once the rule is gone; captured on both sides of it (the gateway neither sent the "
             "reset nor saw it)", gateway={"tls-priorities": PRIO_TLS13, "keepalive": "2"}, router=("nat",), pings=3,
             steps=(("router-reset",), ("sleep", 4.0), ("router-unreset",), ("wait-client", r"^CSTP connected", 30),
                    ("wait-client", r"^Established DTLS", 20), ("ping", 3))),
    Scenario("capture-drops", "a baseline session whose capturing dumpcap stalls (SIGSTOP) during a flood of "
             "1000-byte pings through the tunnel: its buffer overflows, the kernel drops packets of both directions "
             "that the peers exchanged all the same (a busy capturing host); dumpcap's Interface Statistics Block "
             "counts them. Too big for samples/ (megabytes): made by tests/test_capture_dropped.py",
             gateway={"tls-priorities": PRIO_TLS13}, pings=3, steps=(("capture-stall", 6000), ("ping", 3))),
    Scenario("both-sides-loss", "a router between client and gateway drops 3 % of the packets at random both ways and "
             "lowers the TCP MSS to 1200; captured on both sides of it", gateway={"tls-priorities": PRIO_TLS13},
             router=("loss:3", "mss:1200"), pings=40, big_pings=20, big_ping_size=1100),
    Scenario("both-sides-tls-inspection", "a TLS-inspecting firewall between client and gateway (lab.inspect on the "
             "router: the client's TCP to port 443 redirected to it; it ends the client's TLS with its own CA's "
             "certificate, which the client trusts, and opens its own TLS to the gateway); UDP passes untouched, so "
             "DTLS cannot come up; captured on both sides of it (the gateway sees the router's connection)",
             gateway={"tls-priorities": PRIO_TLS13}, router=(), tls_inspection=True, wait_dtls=False, hold=3.0),
    Scenario("both-sides-inspect-no-udp", "a TLS-inspecting firewall between client and gateway that also drops UDP "
             "to port 443 (as firewalls told to block QUIC do): the client's TLS ends at the firewall, which opens "
             "its own TLS to the gateway, and DTLS never comes up; captured on both sides of it — the two captures "
             "share no packet payload",
             gateway={"tls-priorities": PRIO_TLS13}, router=("drop-udp",), tls_inspection=True, wait_dtls=False,
             hold=3.0),
    Scenario("both-sides-nat-split", "a carrier-grade NAT without paired pooling between client and gateway: the "
             "client's TCP leaves from 198.18.0.3, its UDP from 198.18.0.4 — at the gateway the session's TLS and "
             "DTLS come from two addresses; captured on both sides of it",
             gateway={"tls-priorities": PRIO_TLS13}, router=("nat-tcp", "nat-udp"), pings=5, hold=2.0),
    Scenario("both-sides-mtu-blackhole", "a path MTU black hole between the captures: the router's link toward the "
             "client takes 1300 bytes (a bigger frame from the client is dropped as it arrives) and the router's ICMP "
             "'fragmentation needed' is dropped; the TLS handshake and the small pings pass, the client's DTLS MTU "
             "probes and big pings over 1300 bytes never reach the gateway",
             gateway={"tls-priorities": PRIO_TLS13}, router=("mtu:1300",), pings=5, big_pings=5, big_ping_size=1250,
             big_ping_df=False),
]}
