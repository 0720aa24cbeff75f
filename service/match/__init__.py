"""Matching: profile queries compiled into one index over all profiles."""
