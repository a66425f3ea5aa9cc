"""Checkpoint policies: each maps a request plus evidence to a `Plan`."""
