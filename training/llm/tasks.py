"""django-q2 tasks of the LLM area: thin, ids in, one service call each."""

from __future__ import annotations

from typing import Any

from training.llm.classify import classify_dataset_images
from training.llm.runs import caption_run_execute


def caption_run(character_id: int, run_id: str) -> str:
    """Auto-caption a character's images (a run queued by ``caption_run_start``); safe to re-deliver."""
    return caption_run_execute(character_id=character_id, run_id=run_id)


def classify_images(image_ids: list[int]) -> dict[str, Any]:
    """Classify dataset images again; re-delivery only repeats the same decision."""
    return classify_dataset_images(image_ids=image_ids).as_dict()


def enqueue_caption_run(character_id: int, run_id: str) -> None:
    from generation import tasks  # the broker connection generation already keeps

    tasks.async_task(
        "training.llm.tasks.caption_run", character_id, run_id, task_name=f"captions-{run_id}", group="training"
    )


def enqueue_classify(image_ids: list[int], *, label: str) -> None:
    from generation import tasks

    tasks.async_task("training.llm.tasks.classify_images", list(image_ids), task_name=label, group="training")
