"""The Jinja2 environment: a user's template directory first, then paperboy's own."""

from __future__ import annotations

import sys
from pathlib import Path

import jinja2

# In a source checkout (and an editable install) the templates are beside the package;
# installed from a wheel, under <prefix>/share/paperboy (pyproject's data-files).
PACKAGED = Path(__file__).resolve().parents[2] / "templates"
INSTALLED = Path(sys.prefix) / "share" / "paperboy" / "templates"


def template_dirs(override: Path | None = None) -> list[Path]:
    """Where templates (and the web's static files) are looked for: the user's directory
    first (any file there wins), then paperboy's own."""
    packaged = PACKAGED if (PACKAGED / "email").is_dir() else INSTALLED
    return [override, packaged] if override is not None else [packaged]


def environment(override: Path | None = None) -> jinja2.Environment:
    """Templates: the user's directory first (any file there wins), then paperboy's own."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(path) for path in template_dirs(override)]),
        autoescape=jinja2.select_autoescape(("html", "xml"), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
