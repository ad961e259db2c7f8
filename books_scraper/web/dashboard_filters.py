"""A dashboard filter's empty choice says what it means ("All categories") instead of being blank.

datasette-dashboards 0.8 renders a select filter's first, empty option with no text and has no
setting for it (its dashboard_view.html). A filter in metadata.yml may carry `blank_label`, which the
plugin ignores; a script added to the plugin's dashboard page (extra_body_script) writes it into
that option, or into the text box's placeholder when the plugin shows one instead (over 100 options).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

# The plugin's page for one dashboard, routed as /-/dashboards/<slug>.
DASHBOARD_TEMPLATE = "dashboard_view.html"

SCRIPT = """
for (const [name, label] of Object.entries(%s)) {
  const field = CSS.escape(name);
  const blank = document.querySelector(`.dashboard-filters select[name="${field}"] option[value=""]`);
  if (blank) blank.textContent = label;
  const box = document.querySelector(`.dashboard-filters input[name="${field}"][list]`);
  if (box) box.placeholder = label;
}
"""


def blank_labels(dashboard: dict[str, Any]) -> dict[str, str]:
    """Each filter's label for its empty choice, by the filter's query-string name."""
    return {
        name: str(spec["blank_label"])
        for name, spec in (dashboard.get("filters") or {}).items()
        if isinstance(spec, dict) and spec.get("blank_label")
    }


def script_literal(value: object) -> str:
    """JSON that is safe inside an HTML <script> element (no '</script>' or '<!--' can form)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def blank_label_script(template: str, request, datasette) -> str | None:
    """The script naming the empty choices of the requested dashboard's filters, on its page only."""
    if template != DASHBOARD_TEMPLATE or request is None:
        return None
    dashboards = datasette.plugin_config("datasette-dashboards") or {}
    dashboard = dashboards.get(unquote(request.url_vars.get("slug", "")))
    labels = blank_labels(dashboard) if isinstance(dashboard, dict) else {}
    return SCRIPT % script_literal(labels) if labels else None
