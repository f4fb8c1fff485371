"""Start the three services as child processes with prefixed logs; restart one that crashed; stop them cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

from shared.config import SemcomConfig

from .client import check_health

# (module, label, port field): started receiver first, so each service finds its peer.
SERVICES = (
    ("receiver", "receiver", "receiver_port"),
    ("channel_emulator", "channel ", "channel_port"),
    ("transmitter", "transmitter", "transmitter_port"),
)
COLORS = ("\033[35m", "\033[36m", "\033[33m")


STOP_TIMEOUT_S = 15.0
"""How long the services get, together, to stop gracefully after SIGTERM before they are killed."""


class ServiceProcesses:
    """The three services as subprocesses of this one; use as a context manager."""

    def __init__(self, config: SemcomConfig, env: dict[str, str] | None = None, echo: bool = True):
        self.config = config
        self.env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
        self.echo = echo
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def __enter__(self) -> "ServiceProcesses":
        self.processes = [(module, self._start(index)) for index, (module, _, _) in enumerate(SERVICES)]
        return self

    def _start(self, index: int) -> subprocess.Popen:
        """Start service ``SERVICES[index]`` with its log lines prefixed."""
        module, label, _ = SERVICES[index]
        process = subprocess.Popen([sys.executable, "-m", module], env=self.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True)
        prefix = f"{COLORS[index]}{label:>11} |\033[0m " if sys.stderr.isatty() else f"{label:>11} | "
        threading.Thread(target=self._pump, args=(process, prefix), daemon=True).start()
        return process

    def restart_exited(self) -> list[tuple[str, int]]:
        """Start again each service that exited (the others keep running); its module and exit code."""
        restarted = []
        for index, (module, process) in enumerate(self.processes):
            if process.poll() is not None:
                restarted.append((module, process.returncode))
                self.processes[index] = (module, self._start(index))
        return restarted

    def _pump(self, process: subprocess.Popen, prefix: str) -> None:
        for line in process.stdout:
            if self.echo:
                sys.stderr.write(prefix + line)

    def wait_healthy(self, timeout_s: float = 120.0) -> None:
        """Block until every service answers SERVING; ``RuntimeError`` if one exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        for module, _, port_field in SERVICES:
            target = f"{self.config.host}:{getattr(self.config, port_field)}"
            while not asyncio.run(check_health(target, timeout_s=1.0)):
                self.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{module} did not become healthy at {target} within {timeout_s:.0f} s")
                time.sleep(0.3)

    def check_alive(self) -> None:
        for module, process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{module} exited with code {process.returncode}; see its log above")

    def __exit__(self, *exc) -> None:
        for _, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S  # one deadline for all, not one each
        for _, process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
