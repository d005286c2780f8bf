"""Without keys, openconnect's init posted again with the group chosen from an ASA-style form (`<group-select>`) is
group selection, as the keyed reading has it — not a login round (before: a keyless AUTH_MULTI_ROUND "Authentication
took 2 rounds" on 20 scripted samples whose login was one round). Read from sizes (analyzer/phases/inferred.py
`_init_rounds`): a little more posted than the first init, answered with a record of the first form's size."""
from __future__ import annotations

from .conftest import every_sample
from .helpers import doc, phase

#: keyless still counts a round the keyed reading does not: the legacy form login's fallback GET and urlencoded
#: POST (aggauth-v1-fallback), the host scan's pages before the login (hostscan)
STILL_DIFFER = {"scripted/aggauth-v1-fallback", "scripted/hostscan"}


def test_multi_round_only_where_keyed():
    extra = []
    for name in every_sample():
        keyed, keyless = doc(name), doc(name, keys=False)
        if len(keyed["sessions"]) != 1 or len(keyless["sessions"]) != 1:
            continue
        k = {f["id"] for f in keyed["sessions"][0]["findings"]}
        u = {f["id"] for f in keyless["sessions"][0]["findings"]}
        if "AUTH_MULTI_ROUND" in u and "AUTH_MULTI_ROUND" not in k:
            extra.append(name)
    assert sorted(extra) == sorted(STILL_DIFFER)


def test_repost_is_group_selection():
    """scripted/terminate: init, init with the group, auth-reply — two init rounds and one login round, keyed and
    keyless alike."""
    keyed = doc("scripted/terminate")["sessions"][0]
    keyless = doc("scripted/terminate", keys=False)["sessions"][0]
    assert len(phase(keyed, "group-selection")["details"]["posts"]) == 2
    assert len(phase(keyed, "user-auth")["details"]["rounds"]) == 1
    assert len(phase(keyless, "group-selection")["inferred"]["rounds"]) == 2
    assert phase(keyless, "user-auth")["inferred"]["auth_rounds"] == 1
