# Copies each scored asset's current verdict and gated values onto the asset (the columns of
# generation 0008), as quality.services.verdicts keeps them from now on. Data only: the schema
# change is generation's migration.

from django.db import migrations

BATCH = 2000


def _verdict(current):
    decided = {row["passed"] for row in current.values() if row["passed"] is not None}
    if False in decided:
        return "failed"
    return "passed" if decided else "unscored"


def backfill(apps, schema_editor):
    Asset = apps.get_model("generation", "Asset")
    QualityScore = apps.get_model("quality", "QualityScore")
    scored = QualityScore.objects.order_by("asset_id").values_list("asset_id", flat=True).distinct()
    ids = list(scored)
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        current = {pk: {} for pk in chunk}
        rows = QualityScore.objects.filter(asset_id__in=chunk).order_by("pk")
        for row in rows.values("asset_id", "metric", "value", "passed").iterator():
            current[row["asset_id"]][row["metric"]] = row  # a later row of a metric replaces the earlier
        assets = []
        for pk, by_metric in current.items():
            aesthetic, similarity = by_metric.get("aesthetic"), by_metric.get("character_similarity")
            assets.append(
                Asset(
                    pk=pk,
                    verdict=_verdict(by_metric),
                    aesthetic=aesthetic["value"] if aesthetic else None,
                    similarity=similarity["value"] if similarity else None,
                )
            )
        Asset.objects.bulk_update(assets, ["verdict", "aesthetic", "similarity"])


class Migration(migrations.Migration):
    dependencies = [
        ("quality", "0006_scale_indexes"),
        ("generation", "0008_asset_quality_copies"),
    ]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
