from django.db import migrations
from django.db.models import F

ATTRIBUTE_TYPES = {"hair", "eyes", "skin", "face", "body", "outfit", "accessory"}


def forwards(apps, schema_editor):
    Character = apps.get_model("characters", "Character")
    CharacterAttribute = apps.get_model("characters", "CharacterAttribute")
    # A threshold equal to the project's was the old default, not a choice: follow the project now.
    Character.objects.filter(consistency_threshold=F("project__threshold_similarity")).update(
        consistency_threshold=None
    )
    rows = []
    for character in Character.objects.exclude(attributes={}).only("pk", "attributes"):
        if not isinstance(character.attributes, dict):
            continue
        seen = set()
        for key, value in character.attributes.items():
            kind = str(key).strip().lower()
            kind = kind if kind in ATTRIBUTE_TYPES else "other"
            text = (
                value
                if isinstance(value, str)
                else ", ".join(map(str, value))
                if isinstance(value, list)
                else str(value)
            )
            text = text.strip()[:200]
            if not text or kind in seen:
                continue
            seen.add(kind)
            tokens = text if kind != "other" else f"{key}: {text}"[:500]
            rows.append(CharacterAttribute(character=character, type=kind, value=text, prompt_tokens=tokens))
    CharacterAttribute.objects.bulk_create(rows)


class Migration(migrations.Migration):
    dependencies = [("characters", "0002_production_pipeline")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
