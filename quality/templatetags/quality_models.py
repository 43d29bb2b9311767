"""``{% scoring_models_panel %}``: the scoring models' download state, for any page (the dashboard)."""

from __future__ import annotations

from typing import Any

from django import template
from django.conf import settings

from quality.fetch import scoring_models

register = template.Library()


@register.inclusion_tag("quality/_model_fetch_panel.html")
def scoring_models_panel() -> dict[str, Any]:
    return {"models": scoring_models(settings.MODELS_DIR)}
