"""Replay of recorded sessions through a TUN adapter, and replay-vs-recording diffs."""
