"""REST API v1 for segment attempts' quality feedback (issue 20 item 4; ``quality.movie.feedback``).

- ``GET /feedback`` (``?project=``, ``?scene=``, ``?segment=``, ``?passed=``) and ``GET /feedback/{id}``;
- ``POST /feedback/{id}/rating`` ``{"rating": 1..5}``: a person's rating of the attempt.

Projects you cannot see answer 404; a viewer's rating is a 403; a rating outside 1–5 is a 400.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from quality.models import QualityFeedback
from quality.movie.feedback import FeedbackError, feedback_get_for_user, feedback_rate, feedback_visible_to
from tower.core.api import FilterSet, IntFilter, parse_id
from tower.core.users import signed_in


class FeedbackSerializer(serializers.ModelSerializer):
    scene = serializers.SerializerMethodField()

    class Meta:
        model = QualityFeedback
        fields = [
            "id",
            "project",
            "scene",
            "segment",
            "template",
            "job",
            "attempt",
            "scores",
            "prompt",
            "params",
            "successful_elements",
            "failed_elements",
            "passed",
            "rating",
            "rated_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_scene(self, row: QualityFeedback) -> int | None:
        return row.segment.scene_id if row.segment is not None else None


class RatingSerializer(serializers.Serializer):
    rating = serializers.IntegerField(min_value=1, max_value=5, help_text="1 (bad) to 5 (good)")


class FeedbackFilter(FilterSet):
    project = IntFilter(field_name="project_id")
    scene = IntFilter(field_name="segment__scene_id")
    segment = IntFilter(field_name="segment_id")
    passed = filters.BooleanFilter()

    class Meta:
        model = QualityFeedback
        fields = ["project", "scene", "segment", "passed"]


class FeedbackViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Quality feedback of segment attempts in the projects you can see, newest first."""

    serializer_class = FeedbackSerializer
    filterset_class = FeedbackFilter
    ordering_fields = ["created_at"]

    def get_queryset(self) -> QuerySet[QualityFeedback]:
        return feedback_visible_to(self.request.user)

    def get_object(self) -> QualityFeedback:
        write = self.request.method not in ("GET", "HEAD", "OPTIONS")
        return feedback_get_for_user(user=self.request.user, pk=parse_id(self.kwargs["pk"]), write=write)

    @extend_schema(request=RatingSerializer, responses={200: FeedbackSerializer})
    @action(detail=True, methods=["post"])
    def rating(self, request: Request, pk: str | None = None) -> Response:
        """Rate the attempt 1 (bad) to 5 (good); a later rating replaces it."""
        row = self.get_object()
        data = RatingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            row = feedback_rate(feedback=row, rating=data.validated_data["rating"], user=signed_in(request.user))
        except FeedbackError as exc:
            raise serializers.ValidationError({"rating": [str(exc)]}) from None
        return Response(FeedbackSerializer(row).data)
