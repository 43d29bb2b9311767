"""How a job's state reads on the studio's pages (the job page, its rows in lists)."""

from __future__ import annotations

import re

from django import template

from generation.models import Job, JobStatus

register = template.Library()

WAITING_PREFIX = "waiting: "  # the engine notes why a queued job cannot be placed (job_claim)
SLOT_REASON = re.compile(r"^no free slot on (?P<names>.+)$")


@register.filter
def queued_note(job: Job) -> str:
    """What a queued job waits for: a free slot on a named backend, a backend at all, or its turn."""
    if job.status != JobStatus.QUEUED:
        return ""
    message = job.error_message or ""
    if message.startswith(WAITING_PREFIX):
        reason = message[len(WAITING_PREFIX) :]
        slot = SLOT_REASON.match(reason)
        if slot:
            return f"waiting for a free slot on {slot['names']}"
        return f"waiting: {reason}"
    if job.queue_position:
        return f"#{job.queue_position} in queue"
    return "queued"


@register.filter
def error_node_shown(job: Job) -> str:
    """The failed node for the error box, or "" when the message already names it (pre-flight
    messages read "node 4 (ImageAddNoise): …"): the node is named once."""
    node = job.error_node or ""
    if not node:
        return ""
    node_id = node.removeprefix("#").split(" ", 1)[0]
    message = job.error_message or ""
    named = (node in message) or bool(re.search(rf"(?:\bnode |#){re.escape(node_id)}\b", message))
    return "" if named else node
