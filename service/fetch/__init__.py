"""Adapters that get snapshots from where sources live: HTTP(S) with polite polling."""
