import json
import logging

from app.core.logging import JsonFormatter, job_context


def _format(record_msg: str, **extra: object) -> dict:
    logger = logging.getLogger("vivify.test")
    record = logger.makeRecord("vivify.test", logging.INFO, __file__, 1, record_msg, (), None, extra=extra)
    return json.loads(JsonFormatter().format(record))


def test_lines_are_json_with_extras() -> None:
    entry = _format("stored clip", bytes=1234)
    assert entry["msg"] == "stored clip" and entry["bytes"] == 1234 and entry["level"] == "info"
    assert "job_id" not in entry


def test_job_id_is_on_every_line_inside_a_job() -> None:
    with job_context("abc123"):
        assert _format("step")["job_id"] == "abc123"
    assert "job_id" not in _format("after")
