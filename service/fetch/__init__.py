"""Adapters that get snapshots from where sources live: files, folders and HTTP(S)."""
