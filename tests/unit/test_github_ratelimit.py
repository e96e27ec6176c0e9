"""GitHub's GraphQL rate limit as the answers report it (pure: ``now`` is passed in)."""

from __future__ import annotations

from repo_updater.sources.github_ratelimit import (
    GraphQLBudget,
    is_rate_limit,
    rate_limit_error,
    rate_limit_wait,
)

NOW = 1_800_000_000.0


def test_which_errors_are_rate_limits() -> None:
    assert is_rate_limit({"type": "RATE_LIMITED", "message": "API rate limit exceeded"})
    assert is_rate_limit({"type": "RATE_LIMIT", "code": "graphql_rate_limit", "message": "x"})
    assert is_rate_limit({"code": "graphql_rate_limit", "message": "x"})
    assert is_rate_limit({"message": "You have exceeded a secondary rate limit."})
    # A field's error that mentions rate limits is that field's business; others are not.
    assert not is_rate_limit({"message": "rate limit info unavailable", "path": ["r0", "p1"]})
    assert not is_rate_limit({"type": "NOT_FOUND", "message": "Could not resolve"})
    assert not is_rate_limit("RATE_LIMITED")


def test_how_long_to_wait() -> None:
    reset = str(int(NOW) + 300)
    assert rate_limit_wait({"retry-after": "42", "x-ratelimit-remaining": "0"}, NOW) == 42.0
    assert rate_limit_wait({"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}, NOW) == 301
    # Something remains: a secondary limit without a time: at least a minute.
    assert rate_limit_wait({"x-ratelimit-remaining": "12", "x-ratelimit-reset": reset}, NOW) == 60
    assert rate_limit_wait({}, NOW) == 60.0
    body = {"errors": [{"type": "NOT_FOUND"}, {"type": "RATE_LIMIT", "message": "used up"}]}
    assert rate_limit_error(body, {"retry-after": "5"}, NOW) == ("used up", 5.0)
    assert rate_limit_error({"data": {}}, {"x-ratelimit-remaining": "0"}, NOW) is None


def test_budget_holds_back_the_batch_that_would_not_fit() -> None:
    budget = GraphQLBudget(reserve=10)
    assert budget.wait_before_query(NOW) is None  # nothing known yet
    reset_at = "2027-01-15T09:00:00Z"  # an ISO DateTime, whatever its description says
    budget.update({"rateLimit": {"cost": 3, "remaining": 13, "resetAt": reset_at}}, {}, NOW)
    assert budget.wait_before_query(NOW) is None  # 13 - 10 >= 3
    budget.update({"rateLimit": {"cost": 3, "remaining": 12, "resetAt": reset_at}}, {}, NOW)
    assert budget.reset_at is not None
    wait = budget.wait_before_query(NOW)
    assert wait == budget.reset_at - NOW + 1
    assert budget.wait_before_query(budget.reset_at) is None  # a new window
    assert budget.remaining is None


def test_budget_from_headers_when_the_query_has_no_rate_limit() -> None:
    budget = GraphQLBudget()
    reset = str(int(NOW) + 60)
    budget.update(
        {"rateLimit": None}, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}, NOW
    )
    assert budget.wait_before_query(NOW) == 61.0
    ghes = GraphQLBudget()  # rate limits off: neither body nor headers say anything
    ghes.update({"rateLimit": None}, {}, NOW)
    assert ghes.wait_before_query(NOW) is None
    ghes.exhausted(NOW + 30)
    assert ghes.wait_before_query(NOW) == 31.0
