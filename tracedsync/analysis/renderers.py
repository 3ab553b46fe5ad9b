"""Renderers chosen by name: ``text``, ``json``, ``perfetto``, ``html``.

A renderer writes a `Report` to a text stream. Each lives in its own module; this one only maps
names to them (imported lazily, so ``--format json`` never imports rich).
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol, TextIO

from .report import Report


class Renderer(Protocol):
    """What every renderer provides."""

    def render(self, report: Report, out: TextIO) -> None:
        """Write ``report`` to ``out``."""


_MODULES = {
    "text": "render_text",
    "json": "render_json",
    "perfetto": "render_perfetto",
    "html": "render_html",
}
NAMES = tuple(_MODULES)


def get_renderer(name: str, **options: Any) -> Renderer:
    """The renderer called ``name``, built with ``options``; `KeyError` for an unknown name."""
    module = importlib.import_module(f"{__package__}.{_MODULES[name]}")
    renderer: Renderer = module.RENDERER(**options)
    return renderer
