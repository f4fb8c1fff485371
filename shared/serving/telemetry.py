"""Prometheus metrics of the three services (one registry per process).

Every metric has a ``service`` label (transmitter, channel_emulator, receiver), so the
services can also share one process, as the in-process integration tests do.
"""

from __future__ import annotations

import hashlib
import time
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Latency buckets in seconds: 0.5 ms .. 60 s.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

STAGE_LATENCY = Histogram(
    "semcom_stage_latency_seconds",
    "Latency of one pipeline stage for one image (decode_input, encode, channel, equalize, decode, "
    "reconstruct, quality, end_to_end)",
    ["service", "stage"],
    buckets=LATENCY_BUCKETS,
)
IMAGES = Counter("semcom_images_total", "Images answered, by gRPC status code name", ["service", "status"])
SYMBOLS = Counter("semcom_symbols_total", "Complex channel symbols handled", ["service"])
IN_FLIGHT = Gauge("semcom_in_flight_requests", "Requests accepted and not yet answered", ["service"])
QUEUE_DEPTH = Gauge("semcom_queue_depth", "Jobs waiting for a worker", ["service"])
BATCH_SIZE = Histogram("semcom_batch_size", "Images decoded together in one network pass", ["service"],
                       buckets=(1, 2, 4, 8, 16, 32, 64))
BUSY_WORKERS = Gauge("semcom_busy_workers", "Workers computing now (utilisation = busy / workers)", ["service"])
SLOT_USERS = Histogram("semcom_slot_users", "Frames of different users superposed in one slot (mu_mimo)", ["service"],
                       buckets=(1, 2, 3, 4, 6, 8, 16))
WORKERS = Gauge("semcom_workers", "Workers in the pool", ["service"])
DROPS = Counter("semcom_dropped_total", "Requests answered without compute, by reason", ["service", "reason"])
LABELLED_USERS = 64
"""Users with a label of their own in ``semcom_user_latency_seconds``; later ones share 'other'."""
USER_LABEL_CHARS = 32
"""Characters of a user's label at most: a longer user id is cut and tagged with its hash."""
USER_LATENCY = Histogram("semcom_user_latency_seconds", "Receiver-side latency (queue + compute) per user; "
                         f"users beyond the first {LABELLED_USERS} share the label 'other'", ["user"],
                         buckets=LATENCY_BUCKETS)
_users: set[str] = set()


def user_label(user_id: str) -> str:
    """``user_id`` as a metric label, bounded in length (:data:`USER_LABEL_CHARS`: a longer one is its
    start and a hash) and in count (:data:`LABELLED_USERS` distinct users, then 'other')."""
    if len(user_id) > USER_LABEL_CHARS:
        digest = hashlib.sha256(user_id.encode()).hexdigest()[:8]
        user_id = f"{user_id[:USER_LABEL_CHARS - 9]}~{digest}"
    if user_id in _users or len(_users) < LABELLED_USERS:
        _users.add(user_id)
        return user_id
    return "other"


def start_metrics_server(host: str, port: int) -> None:
    """Serve ``/metrics`` on ``host``:``port`` (port 0: do not serve)."""
    if port:
        start_http_server(port, addr=host)


@contextmanager
def timed(service: str, stage: str, latencies: dict):
    """Time a block: observe it in the histogram and store milliseconds in ``latencies[stage]``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - start
        STAGE_LATENCY.labels(service, stage).observe(seconds)
        latencies[stage] = seconds * 1000.0
