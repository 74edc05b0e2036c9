"""The embedded broker: kombu's filesystem transport, made safe for two processes.

kombu 5.7 writes each message straight to its final `*.msg` name, so a consumer polling the folder
can pick up a half-written file, fail to decode it and drop the job. Here a message is written under
a temporary name and renamed into place (atomic on one filesystem), and a consumed message is moved
to our own folder (not the shared /tmp) before it is read and deleted.

Routing has the same kind of race: kombu truncates an exchange's binding table before rewriting it,
and records a binding in process memory before writing it, so a publish racing a declare finds no
queue and the message goes to the dead-letter queue. Here tables are rewritten atomically under a
lock, and a lookup also sees the bindings this process has declared.

Registered as the `vivifyfs://` transport; `filesystem://` in settings maps to it (app/core/queue.py).
"""

from __future__ import annotations

import fcntl
import os
import uuid
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

TRANSPORT_ALIASES.setdefault("vivifyfs", "app.core.broker_fs:Transport")


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]  # kombu's own base names it `message`
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f"partial-{uuid.uuid4().hex}.tmp")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, final)
        except OSError as exc:
            raise filesystem.ChannelError(f"Cannot add message to {self.data_folder_out!r}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> Any:  # never blocks: timeout unused
        suffix = f".{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if not name.endswith(suffix) or name.partition(".")[2] != suffix[1:]:
                continue
            taken = os.path.join(self.processed_folder, name)
            try:
                # Rename is atomic: exactly one consumer gets the message.
                os.replace(os.path.join(self.data_folder_in, name), taken)
            except FileNotFoundError:
                continue  # another consumer took it
            try:
                with open(taken, "rb") as f:
                    payload = f.read()
            finally:
                os.remove(taken)
            return loads(bytes_to_str(payload))
        raise filesystem.Empty()

    def get_table(self, exchange: str) -> list:
        table = list(super().get_table(exchange))
        declared = self.state.exchanges.get(exchange, {}).get("table", [])
        return table + [filesystem.exchange_queue_t(*q) for q in declared if tuple(q) not in table]

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        file = self._exchange_file(exchange)
        self.control_folder.mkdir(exist_ok=True)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        with open(f"{file}.lock", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)  # serialises read-modify-write across processes
            try:
                with open(file, "rb") as f:
                    table = [filesystem.exchange_queue_t(*q) for q in loads(bytes_to_str(f.read()))]
            except FileNotFoundError:
                table = []
            if entry in table:
                return
            table.insert(0, entry)
            partial = f"{file}.{uuid.uuid4().hex}.tmp"
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(table)))
            os.replace(partial, file)


class Transport(filesystem.Transport):
    Channel = Channel
