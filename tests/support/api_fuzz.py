"""A property-based run of the live API with schemathesis: for every operation of
``/openapi.json``, cases generated from the schema (valid ones and, in negative mode, invalid
ones) are sent over HTTP, and each answer is checked: no 5xx, a documented status, a documented
content type, a body that matches the documented schema.

Synchronous (schemathesis sends with ``requests``): run it in a thread while the server runs in
the event loop. Used by ``tests/e2e/test_api_fuzz.py`` (bounded, derandomised) and
``bench/api_fuzz.py`` (longer, random).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, openapi
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class FuzzResult:
    requests: int = 0
    server_errors: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    operations: int = 0
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        return (
            f"{self.operations} operations, {self.requests} requests, "
            f"{self.server_errors} 5xx, {len(self.failures)} check failures ({statuses})"
        )


def fuzz(
    url: str,
    document: dict[str, Any],
    token: str,
    *,
    max_examples: int,
    derandomize: bool = True,
    modes: tuple[GenerationMode, ...] = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
) -> FuzzResult:
    """Send ``max_examples`` cases per operation and mode to the API at ``url``."""
    schema = openapi.from_dict(document)
    result = FuzzResult()
    for op_result in schema.get_all_operations():
        if not isinstance(op_result, Ok):
            raise AssertionError(f"the document has an invalid operation: {op_result}")
        operation = op_result.ok()
        result.operations += 1
        headers = {"Authorization": f"Bearer {token}"}
        if operation.method.upper() == "POST" and not operation.body:  # a write with no body
            headers["Content-Type"] = "application/json"
        takes_input = any((operation.path_parameters, operation.query, operation.body))
        for mode in modes:
            if mode is GenerationMode.NEGATIVE and not takes_input:
                continue  # nothing to make invalid
            strategy = operation.as_strategy(generation_mode=mode, headers=headers)
            config = settings(
                max_examples=max_examples,
                deadline=None,
                database=None,
                derandomize=derandomize,
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
            )
            _run(url, f"{operation.label} [{mode.value}]", strategy, config, result)
    return result


def _run(url: str, label: str, strategy: Any, config: settings, result: FuzzResult) -> None:
    @config
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=url, timeout=30)
        status = response.status_code
        result.requests += 1
        result.by_status[status] = result.by_status.get(status, 0) + 1
        if status >= 500:
            result.server_errors += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, FailureGroup) as exc:
            result.failures.append(f"{label} {status}: {str(exc)[:600]}")

    run()
