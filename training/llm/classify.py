"""Which of a project's characters appears in a dataset image (interface; issue 6 fills it in).

Contract used by ingestion and the review page:

    classify_dataset_images(*, image_ids: list[int]) -> ClassifyReport

sets ``classified_character``, ``classification_confidence`` (0–1) and ``classification_method``
("llm" or "embedding") on each image it can decide, leaves the rest untouched, and never raises for
one bad image (an unreachable LLM falls back to embeddings and is noted in the report).
"""
