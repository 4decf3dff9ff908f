"""The worker's side of the event pipe: one lock for the three threads that write to it.

The job thread sends progress, a heartbeat thread says the process is alive, and a logging handler
forwards log records; a ``Connection`` is not safe to write from several threads at once. This
module is torch-free so the worker starts its heartbeat before importing torch (seconds on a cold
disk), and the client's watchdog can trust silence from the first moment.
"""

from __future__ import annotations

import logging
import threading
from multiprocessing.connection import Connection

from inference.worker.protocol import Event, Heartbeat, WorkerLog

QUIET_LOGGERS = ("httpx", "httpx2", "httpcore", "filelock")  # a line per HTTP request or lock at INFO


class EventChannel:
    """Thread-safe ``send`` over the event pipe; ``job_id`` is the job running now (for heartbeats and logs)."""

    def __init__(self, conn: Connection, heartbeat_seconds: float) -> None:
        self.job_id = ""
        self.heartbeat_seconds = heartbeat_seconds  # the worker updates it with its settings
        self._conn = conn
        self._lock = threading.Lock()
        self._closed = False

    def send(self, event: Event) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._conn.send(event)
            except (BrokenPipeError, ConnectionResetError, OSError):
                self._closed = True  # the client went away: the job thread finds out at its next command
                raise

    def start_heartbeat(self) -> None:
        threading.Thread(target=self._beat, name="vesper-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        stop = threading.Event()
        while not stop.wait(self.heartbeat_seconds):
            try:
                self.send(Heartbeat(self.job_id))
            except OSError:
                return


class ForwardingHandler(logging.Handler):
    """Sends the worker's log records to the client, which writes them into its own log file."""

    def __init__(self, channel: EventChannel, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.channel = channel
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.channel.send(WorkerLog(record.levelno, record.name, self.format(record), self.channel.job_id))
        except OSError:
            pass  # no client to tell
        except Exception:  # noqa: BLE001 - logging must never take the worker down
            self.handleError(record)


def forward_logs(channel: EventChannel) -> None:
    """Route every INFO-and-above record of this process to the client."""
    root = logging.getLogger()
    root.addHandler(ForwardingHandler(channel))
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(logging.WARNING)
