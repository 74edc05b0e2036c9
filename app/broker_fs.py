"""The embedded broker: kombu's filesystem transport, made safe for two processes.

kombu 5.7 writes each message straight to its final `*.msg` name, so a consumer polling the folder
can pick up a half-written file, fail to decode it and drop the job. Here a message is written under
a temporary name and renamed into place (atomic on one filesystem), and a consumed message is moved
to our own folder (not the shared /tmp) before it is read and deleted.

Registered as the `vivifyfs://` transport; `filesystem://` in settings maps to it (app/queue.py).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

TRANSPORT_ALIASES.setdefault("vivifyfs", "app.broker_fs:Transport")


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
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

    def _get(self, queue: str) -> Any:
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


class Transport(filesystem.Transport):
    Channel = Channel
