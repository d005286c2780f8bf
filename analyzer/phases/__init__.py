"""The session builder: groups of flows → VPN sessions with six typed phases.

* `grouping.py` groups the trackers' connections and DTLS flows (one group per connection attempt of a client to
  a gateway); analyzer/evidence.py decides which groups are AnyConnect sessions;
* one module per phase builds its `Phase` and typed details from a group's trackers: `tls_handshake.py`,
  `group_selection.py`, `user_auth.py`, `downloader.py`, `cstp_connect.py`, `dtls.py`; `tunnel.py` the
  session-wide tunnel statistics; `channel.py` the typed channel statistics both tunnel phases carry;
* `session.py` puts a session together (`reconstruct`); analyzer/sessions.py is its public face.

Details are dataclasses (`record.Record`) whose `to_json()` is the public JSON document's `details`; the JSON
schema of the details is generated from them (analyzer/schema.py).
"""
