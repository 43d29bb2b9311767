"""Data: learned negatives taught under the old category terms become the new, model-understood ones.

Rejections before this taught labels such as "off-model colours" or "wrong outfit", which mean
nothing to a checkpoint. Each group of old terms is replaced by its category's new terms at the
group's heaviest weight, so withdrawing one of those rejections later subtracts what it now adds.
The terms are copied here (a migration must not follow later edits of feedback.py).
"""

from __future__ import annotations

from django.db import migrations

REPLACED = [
    (
        ("wrong hair colour", "wrong eye colour", "off-model colours"),
        ("bad colors", "inconsistent colors", "color bleeding", "oversaturated"),
    ),
    (
        ("wrong outfit", "wrong clothes", "inconsistent clothing"),
        ("mismatched clothing", "inconsistent clothing", "extra accessories"),
    ),
    (("artifacts",), ("compression artifacts",)),
]


def _number(value):
    return value if isinstance(value, int | float) and not isinstance(value, bool) else 0


def forwards(apps, schema_editor):
    Character = apps.get_model("characters", "Character")
    for character in Character.objects.exclude(learned_negatives={}).only("pk", "learned_negatives").iterator():
        learned = character.learned_negatives
        if not isinstance(learned, dict):
            continue
        changed = dict(learned)
        for old_terms, new_terms in REPLACED:
            # Only a group that holds a term nobody else teaches ("inconsistent clothing" is in both lists).
            if not any(term in changed and term not in new_terms for term in old_terms):
                continue
            weight = max(_number(changed.get(term)) for term in old_terms)
            for term in old_terms:
                changed.pop(term, None)
            if weight > 0:
                for term in new_terms:
                    changed[term] = max(_number(changed.get(term)), weight)
        if changed != learned:
            Character.objects.filter(pk=character.pk).update(learned_negatives=changed)


class Migration(migrations.Migration):
    dependencies = [
        ("characters", "0001_initial"),
        ("training", "0005_ingest_batch_plural"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
