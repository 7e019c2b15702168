"""The accessibility statement ("tillgänglighetsredogörelse"): one text, from the config's
``accessibility`` section, shown by the console (``/tillganglighet``, no sign-in) and written
beside the intranet copy (``tillganglighet.html``).

``updated`` ("uppdaterades senast") is when the statement's content last changed: the
section's ``reviewed:`` date, or else the day the config file was last changed (the caller
says which); never simply today."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from dispatch.config.settings import AccessibilitySettings
from dispatch.publishing.atomic import Replace
from dispatch.publishing.intranet import INDEX, publish_page, render_template, web_templates_dir

PAGE = "tillganglighet.html"


def statement_body(accessibility: AccessibilitySettings, service: str, email_templates_dir: Path, updated: date) -> str:
    """The statement's text (HTML, escaped), without a page around it."""
    return render_template(web_templates_dir(email_templates_dir), "statement.html",
                             {"a": accessibility, "service": service, "updated": updated.isoformat()})


def write_statement(accessibility: AccessibilitySettings, service: str, email_templates_dir: Path, directory: Path,
                    updated: date, *, replace: Replace = os.replace) -> Path:
    """``tillganglighet.html`` in the intranet copy's directory."""
    templates = web_templates_dir(email_templates_dir)
    body = statement_body(accessibility, service, email_templates_dir, updated)
    page = render_template(templates, PAGE, {"service": service, "body": body, "index_href": INDEX})
    return publish_page(directory, PAGE, page.encode("utf-8"), "the accessibility statement", replace=replace)
