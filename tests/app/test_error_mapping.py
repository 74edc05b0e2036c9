"""The one mapping of domain errors to HTTP answers (app.web.errors), for the API and the pages."""

from __future__ import annotations

import pytest

from app.core import errors
from app.core.errors import ErrorCode, Refused
from app.web.errors import STATUS, http_error


def _kinds(cls: type[Refused] = Refused) -> list[type[Refused]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_kinds(sub)]
    return found


def test_every_kind_of_domain_error_is_in_the_mapping() -> None:
    kinds = _kinds()
    assert kinds, "no domain errors found"
    # Each kind by name, not through a parent: a new kind must be given its own status.
    missing = [kind.__name__ for kind in kinds if kind not in STATUS]
    assert not missing, f"no HTTP status for {missing}"
    declared = {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Refused)}
    assert declared <= {Refused, *kinds}


@pytest.mark.parametrize("kind", _kinds(), ids=lambda k: k.__name__)
def test_each_kind_answers_with_its_status_code_and_words(kind: type[Refused]) -> None:
    answer = http_error(kind(ErrorCode.CONFLICT, "Words for people."))
    assert answer.status == STATUS[kind] and 400 <= answer.status < 600
    assert answer.code == "conflict" and type(answer.code) is str  # the text, never the enum's name
    assert answer.message == "Words for people." and answer.headers == {}


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.Throttled(ErrorCode.QUOTA_EXCEEDED, "Spent.", retry_after_s=3600), 429),
        (errors.Throttled(ErrorCode.RATE_LIMITED, "Slow down.", retry_after_s=7), 429),
        (errors.Unavailable(ErrorCode.STORAGE_UNAVAILABLE, "Down.", retry_after_s=5), 503),
    ],
)
def test_retry_after_goes_into_the_header(error: Refused, status: int) -> None:
    answer = http_error(error)
    assert answer.status == status
    assert answer.headers == {"Retry-After": str(error.retry_after_s)}


def test_the_statuses_the_api_documents() -> None:
    expected = {
        errors.Malformed: 400,
        errors.NotFound: 404,
        errors.Conflict: 409,
        errors.TooLarge: 413,
        errors.Unsupported: 415,
        errors.Invalid: 422,
        errors.Throttled: 429,
        errors.Unavailable: 503,
    }
    assert {kind: STATUS[kind] for kind in expected} == expected
