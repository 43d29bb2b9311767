"""An asset's verdict and gated values, copied onto the asset from its current scores.

The gallery filters and sorts on ``Asset.verdict``, ``aesthetic`` and ``similarity`` (columns it
can index) instead of computing them from the scores per asset; every write of scores calls
``assets_quality_refresh`` in the same transaction, so the copies never disagree with the rows.
"""

from __future__ import annotations

from collections.abc import Iterable

from generation.models import Asset, AssetVerdict
from quality.models import QualityScore

AESTHETIC = "aesthetic"
SIMILARITY = "character_similarity"


def asset_verdict(current: Iterable[QualityScore]) -> str:
    """Failed when some current score failed, passed when some passed and none failed, else unscored."""
    decided = {row.passed for row in current if row.passed is not None}
    if False in decided:
        return AssetVerdict.FAILED
    return AssetVerdict.PASSED if decided else AssetVerdict.UNSCORED


def assets_quality_refresh(*, asset_ids: Iterable[int]) -> int:
    """Recompute the copies of ``asset_ids`` from their current scores (the newest row of each
    metric); returns how many assets were written. Call inside the transaction that wrote scores."""
    ids = sorted(set(asset_ids))
    if not ids:
        return 0
    current: dict[int, dict[str, QualityScore]] = {pk: {} for pk in ids}
    rows = QualityScore.objects.filter(asset_id__in=ids).order_by("pk").only("asset_id", "metric", "value", "passed")
    for row in rows:
        current[row.asset_id][row.metric] = row  # a later row of a metric replaces the earlier
    assets = []
    for pk, by_metric in current.items():
        aesthetic, similarity = by_metric.get(AESTHETIC), by_metric.get(SIMILARITY)
        assets.append(
            Asset(
                pk=pk,
                verdict=asset_verdict(by_metric.values()),
                aesthetic=aesthetic.value if aesthetic else None,
                similarity=similarity.value if similarity else None,
            )
        )
    return Asset.objects.bulk_update(assets, ["verdict", "aesthetic", "similarity"], batch_size=500)
