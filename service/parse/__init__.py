"""Parsers: pure functions from a ``Snapshot`` to ``Parsed``, one per source kind."""
