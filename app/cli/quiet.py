"""What `vivify animate` keeps out of the visitor's terminal.

The face models (mediapipe, on TensorFlow Lite and absl) write their notices straight to file
descriptor 2 from C++ ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager requires a
model..."), and libraries warn through Python's logging and `warnings`. None of it is for the person
who asked for a clip: it goes to the log at debug level. Vivify's own messages, the command's output and
its progress bar stay on the terminal, and log lines are written above a progress bar, never into it.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TextIO

OWN_LOGGERS = ("vivify", "app", "models", "worker")
native_log = logging.getLogger("vivify.native")  # what the face models wrote to the terminal


class ThirdPartyToDebug(logging.Filter):
    """Another library's record below ERROR is logged at DEBUG: out of an INFO log, in a DEBUG one."""

    def filter(self, record: logging.LogRecord) -> bool:
        own = record.name.split(".")[0] in OWN_LOGGERS
        if not own and record.levelno < logging.ERROR:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


@contextmanager
def _filtered_handlers(filter_: logging.Filter) -> Iterator[None]:
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(filter_)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(filter_)


def _writes_to_fd2(stream: TextIO) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return False


@contextmanager
def _native_stderr_to_log() -> Iterator[None]:
    """Descriptor 2 into a temporary file while the block runs, then into the log at debug, line by line.
    Python's sys.stderr (the command's own messages, the log handlers) keeps writing to the terminal."""
    try:
        terminal_fd = os.dup(2)
    except OSError:  # no descriptor 2 (an embedding without one): nothing to keep apart
        yield
        return
    terminal: TextIO = os.fdopen(terminal_fd, "w", buffering=1, encoding="utf-8", errors="replace")
    old_stderr = sys.stderr
    # Python's stderr follows to the terminal only where it writes to descriptor 2 (not when a caller has
    # put another stream there), and so do the log handlers that write to it.
    moving = _writes_to_fd2(old_stderr)
    root = logging.getLogger()
    moved = [h for h in root.handlers if isinstance(h, logging.StreamHandler) and h.stream is old_stderr]
    moved = moved if moving else []
    with tempfile.TemporaryFile() as captured:
        old_stderr.flush()
        os.dup2(captured.fileno(), 2)
        if moving:
            sys.stderr = terminal
        for handler in moved:
            handler.setStream(terminal)
        try:
            yield
        finally:
            terminal.flush()
            os.dup2(terminal_fd, 2)
            sys.stderr = old_stderr
            for handler in moved:
                handler.setStream(old_stderr)
            terminal.close()
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    native_log.debug("%s", line)


@contextmanager
def quiet_third_parties(*, native: bool = True) -> Iterator[None]:
    """Third-party notices go to the log at debug while the block runs; `native` also catches what C++
    libraries write to descriptor 2."""
    logging.captureWarnings(True)  # `warnings.warn` becomes a "py.warnings" log record, filtered below
    try:
        with _filtered_handlers(ThirdPartyToDebug()), _native_stderr_to_log() if native else nullcontext():
            yield
    finally:
        logging.captureWarnings(False)
