"""Requests generated from the OpenAPI document by schemathesis: none gets a server error."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.api.conftest import make_api

#: a few generated requests per operation keep the whole run well under a minute
EXAMPLES = 10


def test_no_generated_request_makes_a_server_error(tmp_path: Path) -> None:
    api, engine = make_api(f"sqlite:///{tmp_path}/herald.db", tmp_path / "dags")
    api.add_run(state="failed", tasks={"extract": "failed"}, events=[api.add_event()])
    api.add_dead_letter()
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", api.client.app)
    auth = {"Authorization": f"Bearer {api.write}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers=auth)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")
            try:  # and the answer is what the document promises (status, body schema, content type)
                case.validate_response(response)
            except Exception as exc:
                failures.append(f"{case.method} {case.formatted_path}: {str(exc)[:300]}")

        check()
    engine.dispose()
    assert operations >= 20
    assert failures == []
