"""Rendering: digests to email (HTML and text), matches to RSS 2.0 and Atom, via Jinja2."""
