"""The composed stack for real: images built here, `docker compose up`, the host CLI, Prometheus,
scaled receivers (issue 7). Marked ``slow``: minutes of CPU, needs a Docker daemon.

    bash scripts/compose_test.sh                      # prepares the host, runs this module
    python -m pytest -m slow tests/test_compose_stack.py -s

Settings (environment):
  SEMCOM_COMPOSE          compose command, default "docker compose" (or "docker-compose" v2)
  SEMCOM_COMPOSE_FILES    default "docker-compose.yml docker-compose.local.yml" (no registry:
                          local base image, Prometheus from Debian, no Grafana);
                          "docker-compose.yml" alone with Docker Hub access
  SEMCOM_COMPOSE_IMAGES   Kodak images sent in the first run (default 8)
  SEMCOM_COMPOSE_KEEP=1   leave the stack running after the tests
  KODAK_DIR               default ../shared/data/kodak
Timings go to runs/compose_test/timings.json and are printed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "semcom-test"
PORTS = {  # host ports, away from the defaults so a running `semcom up` does not clash
    "SEMCOM_TRANSMITTER_HOST_PORT": 55051,
    "SEMCOM_TRANSMITTER_METRICS_HOST_PORT": 59101,
    "SEMCOM_CHANNEL_METRICS_HOST_PORT": 59102,
    "PROMETHEUS_HOST_PORT": 59090,
    "GRAFANA_HOST_PORT": 53000,
}
TARGET = f"127.0.0.1:{PORTS['SEMCOM_TRANSMITTER_HOST_PORT']}"
PROMETHEUS = f"http://127.0.0.1:{PORTS['PROMETHEUS_HOST_PORT']}"
KODAK = Path(os.environ.get("KODAK_DIR", ROOT.parent / "shared" / "data" / "kodak"))
OUT = ROOT / "runs" / "compose_test"
TIMINGS: dict = {}


def log(msg: str) -> None:
    print(f"[compose-test {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def compose_cmd() -> list[str]:
    files = os.environ.get("SEMCOM_COMPOSE_FILES", "docker-compose.yml docker-compose.local.yml").split()
    cmd = shlex.split(os.environ.get("SEMCOM_COMPOSE", "docker compose")) + ["-p", PROJECT]
    for f in files:
        cmd += ["-f", str(ROOT / f)]
    return cmd


def compose_env() -> dict:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in PORTS.items()})
    env.setdefault("SEMCOM_GRPC_MAX_CONNECTION_AGE_S", "10")  # re-resolve replicas quickly
    if "docker-compose.local.yml" in env.get("SEMCOM_COMPOSE_FILES", "docker-compose.local.yml"):
        env.setdefault("TORCH_INDEX_URL", "")  # local wheel in deploy/local + PyPI
    return env


def run(cmd: list[str], timeout: float = 900, check: bool = True, **kw) -> subprocess.CompletedProcess:
    log("$ " + shlex.join(cmd))
    proc = subprocess.run(cmd, cwd=ROOT, env=compose_env(), text=True, capture_output=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{shlex.join(cmd)} exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def timed(name: str, cmd: list[str], **kw) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    proc = run(cmd, **kw)
    TIMINGS[name] = round(time.perf_counter() - start, 1)
    log(f"{name}: {TIMINGS[name]} s")
    return proc


def send(images: list[Path], timeout: float = 600) -> list[dict]:
    """The host CLI, unchanged, against the composed transmitter: one stream, JSON lines."""
    cmd = [sys.executable, "-m", "semcom_cli.main", "send", *map(str, images), "--target", TARGET,
           "--channel", "awgn", "--snr", "10", "--json"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, text=True, capture_output=True, timeout=timeout)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert records, f"no results from semcom send (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return records


def prom(query: str) -> list[dict]:
    url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = json.load(reply)
    assert body["status"] == "success", body
    return body["data"]["result"]


def receiver_counts() -> dict[str, float]:
    """Images answered per receiver replica (instance = replica IP:9103), from Prometheus;
    0 for a scraped replica that has not answered yet (its counter has no series before)."""
    counts = {r["metric"]["instance"]: 0.0 for r in prom('up{job="receiver"} == 1')}
    counts.update({r["metric"]["instance"]: float(r["value"][1])
                   for r in prom('sum by (instance) (semcom_images_total{service="receiver"})')})
    return counts


def wait_for(predicate, timeout: float, every: float = 2.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def stack():
    if shutil.which("docker") is None or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no running Docker daemon (scripts/compose_test.sh says how to get one)")
    if run(compose_cmd() + ["version"], check=False).returncode != 0:
        pytest.skip(f"compose not available as {os.environ.get('SEMCOM_COMPOSE', 'docker compose')}")
    assert KODAK.is_dir(), f"Kodak images not found at {KODAK}"
    env = compose_env()
    base = env.get("BASE_IMAGE", "python:3.11-slim")
    if "docker-compose.local.yml" in env.get("SEMCOM_COMPOSE_FILES", "docker-compose.local.yml") and \
            subprocess.run(["docker", "image", "inspect", base], capture_output=True).returncode != 0:
        timed("base_image_build_s", ["bash", "scripts/build_base_image.sh"], timeout=1800)
    OUT.mkdir(parents=True, exist_ok=True)
    run(compose_cmd() + ["down", "-v", "--remove-orphans"], check=False, timeout=120)
    try:
        timed("image_build_s", compose_cmd() + ["build"], timeout=3600)
        timed("up_to_healthy_s", compose_cmd() + ["up", "-d", "--wait", "--wait-timeout", "600"], timeout=900)
        yield
    finally:
        logs = run(compose_cmd() + ["logs", "--no-color", "--timestamps"], check=False, timeout=120)
        (OUT / "services.log").write_text(logs.stdout + logs.stderr)
        if os.environ.get("SEMCOM_COMPOSE_KEEP") != "1":
            timed("down_s", compose_cmd() + ["down", "-v", "--remove-orphans"], check=False, timeout=300)
        (OUT / "timings.json").write_text(json.dumps(TIMINGS, indent=2) + "\n")
        log("timings: " + json.dumps(TIMINGS))


def test_cli_sends_kodak_through_the_stack(stack):
    images = sorted(KODAK.glob("*.png"))[: int(os.environ.get("SEMCOM_COMPOSE_IMAGES", "8"))]
    start = time.perf_counter()
    first = send(images[:1])
    TIMINGS["first_request_wall_s"] = round(time.perf_counter() - start, 2)
    TIMINGS["first_request_latency_ms"] = first[0]["latency_ms"]
    start = time.perf_counter()
    records = send(images)
    wall = time.perf_counter() - start
    (OUT / "kodak_send.jsonl").write_text("".join(json.dumps(r) + "\n" for r in first + records))
    assert [r["status"] for r in records] == ["OK"] * len(images)
    assert all(r["psnr"] > 15 for r in records)
    e2e = sorted(r["latency_ms"]["end_to_end"] for r in records)
    TIMINGS["kodak_stream"] = {"images": len(images), "wall_s": round(wall, 1),
                               "images_per_s": round(len(images) / wall, 3),
                               "end_to_end_ms_median": round(e2e[len(e2e) // 2], 1),
                               "mean_psnr_db": round(sum(r["psnr"] for r in records) / len(records), 2)}
    log(f"kodak: {TIMINGS['kodak_stream']}")


def test_prometheus_scrapes_latency_histograms(stack):
    # Runs after the sends above; the scrape interval is 5 s.
    def series():
        found = prom('sum by (service, stage) (semcom_stage_latency_seconds_count) > 0')
        return {(r["metric"]["service"], r["metric"]["stage"]) for r in found} or None

    stages = wait_for(series, 60, what="semcom_stage_latency_seconds in Prometheus")
    for expected in [("transmitter", "encode"), ("transmitter", "end_to_end"), ("channel_emulator", "channel"),
                     ("receiver", "equalize"), ("receiver", "decode")]:
        assert expected in stages, f"{expected} missing from {sorted(stages)}"
    buckets = prom('semcom_stage_latency_seconds_bucket{stage="end_to_end"}')
    assert len(buckets) >= 10  # one series per bucket bound
    p50 = prom('histogram_quantile(0.5, sum by (le, stage) (rate(semcom_stage_latency_seconds_bucket[5m])))')
    TIMINGS["prometheus_p50_s"] = {r["metric"]["stage"]: round(float(r["value"][1]), 3) for r in p50
                                   if r["value"][1] not in ("NaN", "+Inf")}
    up = prom("up")
    assert {r["metric"]["job"] for r in up if r["value"][1] == "1"} >= {"transmitter", "channel_emulator", "receiver"}
    log(f"stages scraped: {sorted(stages)}; p50: {TIMINGS['prometheus_p50_s']}")


def test_scaled_receivers_both_serve(stack):
    timed("scale_to_2_healthy_s", compose_cmd() + ["up", "-d", "--wait", "--wait-timeout", "600", "--no-recreate",
                                                   "--no-deps", "--scale", "receiver=2", "receiver"], timeout=900)
    ps = run(compose_cmd() + ["ps", "--format", "json", "receiver"]).stdout
    replicas = [json.loads(line) for line in ps.splitlines() if line.strip()] if not ps.lstrip().startswith("[") \
        else json.loads(ps)
    assert len(replicas) == 2, replicas
    wait_for(lambda: len(receiver_counts()) == 2, 60, what="Prometheus to scrape both receivers")
    before = receiver_counts()
    log(f"receiver images before: {before}")
    image = sorted(KODAK.glob("*.png"))[0]
    start = time.monotonic()
    sends = 0

    def both_served():
        nonlocal sends
        # One stream per CLI call; the emulator's round robin spreads streams over the replicas
        # it knows (new ones after a reconnect: SEMCOM_GRPC_MAX_CONNECTION_AGE_S).
        assert send([image])[0]["status"] == "OK"
        sends += 1
        time.sleep(6)  # one scrape
        after = receiver_counts()
        served = {inst: after.get(inst, 0) - before.get(inst, 0) for inst in after}
        log(f"send {sends}: served since scaling {served}")
        return served if len(served) == 2 and all(v >= 1 for v in served.values()) else None

    served = wait_for(both_served, 240, every=0, what="both receiver replicas to serve")
    TIMINGS["scale"] = {"sends_until_both_served": sends, "seconds_until_both_served": round(time.monotonic() - start, 1),
                        "served_per_replica": served}


def test_adapter_is_published_to_every_replica(stack):
    """`semcom adapt` through the stack reaches both receiver replicas (each keeps its own cache),
    so the user's --use-adapter streams decode wherever they land."""
    if len(run(compose_cmd() + ["ps", "-q", "receiver"]).stdout.split()) < 2:
        pytest.skip("needs the two receivers of test_scaled_receivers_both_serve")
    image = sorted(KODAK.glob("*.png"))[0]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    adapt = subprocess.run([sys.executable, "-m", "semcom_cli.main", "adapt", "--user", "artist", str(image),
                            "--steps", "5", "--target", TARGET], cwd=ROOT, env=env, text=True, capture_output=True,
                           timeout=600)
    TIMINGS["adapt_s"] = round(time.perf_counter() - start, 1)
    log(adapt.stdout.strip())
    assert adapt.returncode == 0 and "published to 2 receiver replica(s)" in adapt.stdout, adapt.stderr[-2000:]
    statuses = []
    for _ in range(4):  # one stream each: spread over the replicas by the emulator's round robin
        proc = subprocess.run([sys.executable, "-m", "semcom_cli.main", "send", str(image), "--target", TARGET,
                               "--user", "artist", "--use-adapter", "--snr", "10", "--json"], cwd=ROOT, env=env,
                              text=True, capture_output=True, timeout=600)
        statuses += [json.loads(line)["status"] for line in proc.stdout.splitlines() if line.startswith("{")]
    TIMINGS["adapter_sends"] = statuses
    assert statuses == ["OK"] * 4, statuses


def test_dead_replica_does_not_lose_requests(stack):
    """Kill one receiver while a stream is in flight: every image is still answered (OK, or a
    clear UNAVAILABLE), and the next stream is served by the survivor."""
    ids = run(compose_cmd() + ["ps", "-q", "receiver"]).stdout.split()
    if len(ids) < 2:
        pytest.skip("needs the two receivers of test_scaled_receivers_both_serve")
    images = sorted(KODAK.glob("*.png"))[:4]
    cmd = [sys.executable, "-m", "semcom_cli.main", "send", *map(str, images), "--target", TARGET,
           "--channel", "awgn", "--snr", "10", "--json"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def serving_replica():
        # The stream went to one replica: the one with requests in flight (its own /metrics).
        for cid in ids:
            metrics = run(["docker", "exec", cid, "python", "-c",
                           "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9103/metrics').read().decode())"],
                          check=False).stdout
            match = re.search(r'^semcom_in_flight_requests\{service="receiver"\} (\S+)', metrics, re.M)
            if match and float(match.group(1)) > 0:
                return cid
        return None

    victim = wait_for(serving_replica, 120, every=1, what="the stream to reach a receiver")
    run(["docker", "kill", victim])
    out, err = proc.communicate(timeout=600)
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    outcomes = [(Path(r["image"]).name, r["status"], r["error"]) for r in records]
    log(f"in flight while the serving receiver died: {outcomes}")
    assert len(records) == len(images), f"lost answers: {outcomes}\n{err[-2000:]}"
    assert all(r["status"] in ("OK", "UNAVAILABLE") for r in records), outcomes
    assert all(r["error"] for r in records if r["status"] != "OK")
    TIMINGS["dead_replica"] = outcomes
    after = send(images[:1])
    assert after[0]["status"] == "OK", after
