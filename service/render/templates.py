"""The Jinja2 environment: a user's template directory first, then paperboy's own."""

from __future__ import annotations

import sys
from pathlib import Path

import jinja2

# In a source checkout (and an editable install) the templates are beside the package;
# installed from a wheel, under <prefix>/share/paperboy (pyproject's data-files).
PACKAGED = Path(__file__).resolve().parents[2] / "templates"
INSTALLED = Path(sys.prefix) / "share" / "paperboy" / "templates"


def environment(override: Path | None = None) -> jinja2.Environment:
    """Templates: the user's directory first (any file there wins), then paperboy's own."""
    paths = [str(override)] if override is not None else []
    packaged = PACKAGED if (PACKAGED / "email").is_dir() else INSTALLED
    paths.append(str(packaged))
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths),
        autoescape=jinja2.select_autoescape(("html", "xml"), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
