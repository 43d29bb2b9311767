"""schemathesis against the live schema: no operation answers 500, every answer matches the schema.

As an owner with a project. Phase.explicit brings schemathesis' coverage phase (every operation's
boundary and invalid values), where most of the time goes, beside EXAMPLES random cases an operation.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.factories import JobFactory

pytestmark = pytest.mark.django_db

EXAMPLES = 3


@pytest.fixture
def owner_headers(owner, project, token_for) -> dict[str, str]:
    JobFactory(project=project)  # something to list and to look up
    return {"Authorization": f"Bearer {token_for(owner)}"}


@pytest.fixture
def wsgi_keeps_the_test_connection():
    """As Django's test client does: a request must not close the test's database connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(owner_headers, wsgi_keeps_the_test_connection):
    # WSGI: the requests run in the test's thread, inside its transaction (the fixtures' rows).
    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application(), headers=owner_headers)


schema = schemathesis.pytest.from_fixture("api_schema")


# One test with a subtest per operation (78): ~2.5 minutes alone on two cores, ~4 on busy ones.
@pytest.mark.timeout(900)
@schema.parametrize()
@hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_api_answers_no_500_and_matches_its_schema(case, owner_headers):
    response = case.call(headers=owner_headers)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
