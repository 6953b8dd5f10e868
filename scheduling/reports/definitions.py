"""The capacity report's definitions page, rendered from docs/capacity-report.md: the one written
definition serves developers in the repository and staff on the site, so the two cannot drift apart."""

from functools import lru_cache
from pathlib import Path

import markdown
from django.conf import settings
from django.utils.safestring import mark_safe

SOURCE = Path(settings.BASE_DIR) / "docs" / "capacity-report.md"


@lru_cache(maxsize=4)
def _rendered(mtime_ns: int) -> tuple[str, str]:
    text = SOURCE.read_text(encoding="utf-8")
    # The file is ours (reviewed like code), so its HTML is trusted; tables and heading anchors are on.
    # Column alignment as align= attributes: the CSP refuses inline style attributes.
    md = markdown.Markdown(
        extensions=["tables", "toc"],
        extension_configs={"tables": {"use_align_attribute": True}, "toc": {"toc_depth": "2"}},
    )
    body = md.convert(text)
    return body, md.toc


def definitions_html() -> tuple[str, str]:
    """(the document as HTML, its table of contents as HTML). Read again when the file changes."""
    body, toc = _rendered(SOURCE.stat().st_mtime_ns)
    return mark_safe(body), mark_safe(toc)
