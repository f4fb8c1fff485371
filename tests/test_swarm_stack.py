"""The compose stack on Docker Swarm for real (issue 19): `docker stack deploy` of
docker-compose.yml (through scripts/swarm_stack.py) with docker-compose.swarm.yml, receivers
scaled to 3, Kodak images through it, a rolling update of the receivers and a killed receiver
task, both under load, with every request counted. Marked ``slow``: minutes of CPU, needs a
Docker daemon (a single-node swarm is made if the daemon is in none, and left at the end).

    python -m pytest -m slow tests/test_swarm_stack.py -s

Settings (environment):
  SEMCOM_SWARM_FILES   compose files, default "docker-compose.yml docker-compose.local.yml"
                       (no registry: local base image, Prometheus from Debian, no Grafana)
  KODAK_DIR            default ../shared/data/kodak, else samples/
Figures go to runs/swarm_test/figures.json and are printed.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from .test_compose_stack import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parent.parent
STACK = "semcom-swarm"
PORTS = {"SEMCOM_TRANSMITTER_HOST_PORT": 56051, "SEMCOM_TRANSMITTER_METRICS_HOST_PORT": 56101,
         "SEMCOM_CHANNEL_METRICS_HOST_PORT": 56102, "PROMETHEUS_HOST_PORT": 56090, "GRAFANA_HOST_PORT": 56300}
TARGET = f"127.0.0.1:{PORTS['SEMCOM_TRANSMITTER_HOST_PORT']}"
OUT = ROOT / "runs" / "swarm_test"
KODAK = Path(os.environ.get("KODAK_DIR", ROOT.parent / "shared" / "data" / "kodak"))
IMAGES = KODAK if KODAK.is_dir() else ROOT / "samples"
FIGURES: dict = {}


def log(msg: str) -> None:
    print(f"[swarm-test {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def env() -> dict:
    return {**os.environ, **{k: str(v) for k, v in PORTS.items()}, "SEMCOM_GRPC_MAX_CONNECTION_AGE_S": "10"}


def run(cmd: list[str], timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess:
    log("$ " + shlex.join(cmd))
    proc = subprocess.run(cmd, cwd=ROOT, env=env(), text=True, capture_output=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{shlex.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def timed(name: str, cmd: list[str], **kw) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    proc = run(cmd, **kw)
    FIGURES[name] = round(time.perf_counter() - start, 1)
    log(f"{name}: {FIGURES[name]} s")
    return proc


def running_tasks(service: str) -> list[str]:
    """Container ids of the service's tasks that run and report healthy."""
    ids = run(["docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={STACK}_{service}",
               "--filter", "health=healthy"]).stdout.split()
    return ids


def three_receivers() -> list[str] | None:
    """The receiver tasks' container ids once three are healthy, else None."""
    ids = running_tasks("receiver")
    return ids if len(ids) == 3 else None


def receiver_metric(cid: str, name: str) -> float:
    """One receiver task's own /metrics value of ``name{service="receiver"...}`` (summed)."""
    text = run(["docker", "exec", cid, "python", "-c", "import urllib.request as u; "
                "print(u.urlopen('http://127.0.0.1:9103/metrics').read().decode())"], check=False).stdout
    return sum(float(v) for v in re.findall(rf'^{name}\{{service="receiver"[^}}]*\}} (\S+)', text, re.M))


def crop_png(path: Path, side: int = 256) -> bytes:
    from PIL import Image

    image = Image.open(path).convert("RGB")
    left, top = (image.width - side) // 2, (image.height - side) // 2
    buffer = io.BytesIO()
    image.crop((left, top, left + side, top + side)).save(buffer, format="PNG")
    return buffer.getvalue()


class Load:
    """``users`` clients, each sending streams of ``per_stream`` requests back to back until
    stopped; every request is counted once: answered OK, answered with an error status (by
    code), or lost (its stream ended, or failed, without its answer)."""

    def __init__(self, image: bytes, users: int = 2, per_stream: int = 4):
        self.image, self.users, self.per_stream = image, users, per_stream
        self.sent = 0
        self.statuses: Counter = Counter()
        self.lost: list[str] = []
        self.stream_errors: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _user(self, user: int) -> None:
        import grpc

        from semcom_cli.client import SendOptions, stream_requests
        from shared.config import load_config
        from shared.serving.rpc import status_code

        config, options = load_config(), SendOptions(snr_db=10.0, user_id=f"load{user}")
        stream = 0
        while not self._stop.is_set():
            ids = [f"{user}-{stream}-{i}" for i in range(self.per_stream)]
            requests = [options.request(request_id, self.image) for request_id in ids]
            self.sent += len(requests)
            answered = set()
            try:
                async for result in stream_requests(TARGET, requests, config, timeout_s=300):
                    answered.add(result.request_id)
                    self.statuses[status_code(result).name] += 1
            except grpc.aio.AioRpcError as exc:  # the stream itself failed: counted, not raised
                self.stream_errors[exc.code().name] += 1
            self.lost += [request_id for request_id in ids if request_id not in answered]
            stream += 1

    async def _main(self) -> None:
        await asyncio.gather(*(self._user(user) for user in range(self.users)))

    def __enter__(self) -> "Load":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=600)

    def report(self) -> dict:
        return {"sent": self.sent, "answered_ok": self.statuses.get("OK", 0),
                "answered_error": {k: v for k, v in self.statuses.items() if k != "OK"},
                "lost": len(self.lost), "stream_errors": dict(self.stream_errors)}


@pytest.fixture(scope="module")
def swarm():
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no running Docker daemon (apt-get install -y docker.io debootstrap; dockerd &)")
    made_swarm = run(["docker", "info", "-f", "{{.Swarm.LocalNodeState}}"]).stdout.strip() != "active"
    if made_swarm:
        run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"])
    OUT.mkdir(parents=True, exist_ok=True)
    files = os.environ.get("SEMCOM_SWARM_FILES", "docker-compose.yml docker-compose.local.yml").split()
    local = "docker-compose.local.yml" in files
    if local and run(["docker", "image", "inspect", "python:3.11-slim"], check=False).returncode != 0:
        timed("base_image_build_s", ["bash", "scripts/build_base_image.sh"], timeout=1800)
    # The images compose would build (Swarm deploys images, it builds none).
    timed("image_build_s", ["docker", "build", "-q", "-t", "semcom/semcom:cpu", "--build-arg", "TORCH_INDEX_URL=", "."],
          timeout=3600)
    if local:
        run(["docker", "build", "-q", "-t", "semcom/prometheus:local", "deploy/prometheus"], timeout=1800)
    run([sys.executable, "scripts/swarm_stack.py", *files, "--out", str(OUT / "stack.yml")])
    stack_files = sorted(OUT.glob("stack*.yml")) + [ROOT / "docker-compose.swarm.yml"]
    run(["docker", "stack", "rm", STACK], check=False)
    wait_for(lambda: not run(["docker", "network", "ls", "-q", "--filter", f"name={STACK}_"]).stdout.strip(), 120,
             what="the previous stack's network to go")
    try:
        start = time.perf_counter()
        run(["docker", "stack", "deploy", "--resolve-image", "never",
             *[arg for f in stack_files for arg in ("-c", str(f))], STACK])
        for service, replicas in (("receiver", 2), ("channel_emulator", 1), ("transmitter", 1)):
            wait_for(lambda: len(running_tasks(service)) >= replicas, 600, every=3, what=f"{service} healthy")
        FIGURES["bring_up_s"] = round(time.perf_counter() - start, 1)
        log(f"stack deployed and healthy in {FIGURES['bring_up_s']} s")
        yield
    finally:
        logs = [run(["docker", "service", "logs", "--no-task-ids", "--timestamps", f"{STACK}_{s}"], check=False)
                for s in ("receiver", "channel_emulator", "transmitter")]
        (OUT / "services.log").write_text("".join(p.stdout + p.stderr for p in logs))
        run(["docker", "stack", "rm", STACK], check=False)
        if made_swarm:
            run(["docker", "swarm", "leave", "--force"], check=False)
        (OUT / "figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
        log("figures: " + json.dumps(FIGURES))


def test_kodak_through_the_swarm_and_three_receivers_serve(swarm):
    from semcom_cli.client import SendOptions, stream_requests
    from shared.config import load_config
    from shared.serving.rpc import status_code

    async def send(images: list[bytes]) -> list[str]:
        requests = [SendOptions(snr_db=10.0).request(str(i), data) for i, data in enumerate(images)]
        return [status_code(r).name async for r in stream_requests(TARGET, requests, load_config(), timeout_s=600)]

    images = [path.read_bytes() for path in sorted(IMAGES.glob("*.png"))[:8]]
    start = time.perf_counter()
    assert asyncio.run(send(images)) == ["OK"] * len(images)
    FIGURES["kodak_stream"] = {"images": len(images), "wall_s": round(time.perf_counter() - start, 1)}
    timed("scale_to_3_s", ["docker", "service", "scale", "--detach=false", f"{STACK}_receiver=3"], timeout=900)
    receivers = wait_for(three_receivers, 300, what="three healthy receivers")
    before = {cid: receiver_metric(cid, "semcom_images_total") for cid in receivers}
    crop = crop_png(sorted(IMAGES.glob("*.png"))[0])
    streams = 0

    def all_served():
        nonlocal streams
        # One stream each: the emulator's round robin over the receivers' DNS records (dnsrr).
        assert asyncio.run(send([crop])) == ["OK"]
        streams += 1
        served = {cid: receiver_metric(cid, "semcom_images_total") - before[cid] for cid in receivers}
        return served if all(v >= 1 for v in served.values()) else None

    served = wait_for(all_served, 300, every=0, what="every receiver task to serve")
    FIGURES["three_receivers"] = {"streams_until_all_served": streams, "served_per_task": list(served.values())}


def test_rolling_update_of_the_receivers_under_load(swarm):
    crop = crop_png(sorted(IMAGES.glob("*.png"))[0])
    with Load(crop) as load:
        time.sleep(10)
        timed("rolling_update_s", ["docker", "service", "update", "--force", "--detach=false", f"{STACK}_receiver"],
              timeout=1200)
        time.sleep(10)
    FIGURES["rolling_update"] = load.report()
    log(f"rolling update under load: {FIGURES['rolling_update']}")
    assert load.sent > 0 and load.statuses["OK"] > 0
    assert not load.lost, f"lost requests: {load.lost[:10]}"


def test_killed_receiver_task_under_load(swarm):
    crop = crop_png(sorted(IMAGES.glob("*.png"))[0])
    receivers = wait_for(three_receivers, 300, what="three healthy receivers")
    with Load(crop, users=3) as load:
        victim = wait_for(lambda: next((c for c in receivers if receiver_metric(c, "semcom_in_flight_requests") > 0),
                                       None), 120, every=0.5, what="a receiver with requests in flight")
        run(["docker", "kill", victim])
        start = time.perf_counter()
        wait_for(lambda: len(set(running_tasks("receiver")) - {victim}) == 3, 300, what="Swarm to replace the task")
        FIGURES["kill_replaced_s"] = round(time.perf_counter() - start, 1)
        time.sleep(10)
    FIGURES["kill"] = load.report()
    log(f"killed receiver under load: {FIGURES['kill']}")
    assert load.sent > 0 and load.statuses["OK"] > 0
    assert not load.lost, f"lost requests: {load.lost[:10]}"
    assert set(load.statuses) <= {"OK", "UNAVAILABLE"}, load.statuses
