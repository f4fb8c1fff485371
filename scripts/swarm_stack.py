"""Write compose files as Docker Swarm stack files: the same services, less what `docker stack
deploy` rejects or ignores.

Swarm's loader reads the Compose file format 3 schema, which has no top-level ``name``, only
the list form of ``depends_on`` and no ``profiles``; ``build`` and ``restart`` it ignores (it
deploys images; restarts are ``deploy.restart_policy``). So each service keeps its image,
command, environment, healthcheck, ports and networks, and loses:

  name, x-* extension fields     (anchors are resolved first)
  build, restart, depends_on     (no start order in a swarm: tasks restart until their peers
                                  answer; the services dial lazily and wait for readiness)
  profiles                       (a service in a profile, off by default in compose, gets
                                  deploy.replicas: 0; `docker service scale` starts it)

and its relative bind-mount paths become absolute.
Everything Swarm-specific (replicas, DNS round robin for the receivers, rolling updates,
restart policy) is in docker-compose.swarm.yml, passed after these files:

  python scripts/swarm_stack.py docker-compose.yml --out runs/swarm/stack.yml
  docker stack deploy -c runs/swarm/stack.yml -c docker-compose.swarm.yml semcom
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

DROPPED_SERVICE_KEYS = ("build", "restart", "depends_on", "profiles")


def absolute_volume(volume, base: Path):
    """A short-syntax bind mount ``./path:target[:mode]`` with its path made absolute from
    ``base`` (Swarm resolves relative paths from the stack file, which lies elsewhere)."""
    if isinstance(volume, str) and volume.startswith(("./", "../")):
        source, _, rest = volume.partition(":")
        return f"{(base / source).resolve()}:{rest}"
    return volume


def stack_file(compose: dict, base: Path) -> dict:
    """One compose file's content (parsed YAML; relative paths from ``base``) as Swarm's
    loader accepts it."""
    stack = {key: value for key, value in compose.items() if key != "name" and not key.startswith("x-")}
    services = {}
    for name, service in (compose.get("services") or {}).items():
        kept = {key: value for key, value in service.items() if key not in DROPPED_SERVICE_KEYS}
        if "volumes" in kept:
            kept["volumes"] = [absolute_volume(volume, base) for volume in kept["volumes"]]
        if service.get("profiles"):
            kept.setdefault("deploy", {})["replicas"] = 0
        services[name] = kept
    stack["services"] = services
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("compose_files", nargs="+", type=Path, help="compose files, in compose's -f order")
    parser.add_argument("--out", type=Path, required=True,
                        help="stack file to write; with several inputs, one file each: OUT's stem + .N + suffix")
    args = parser.parse_args(argv)
    outs = [args.out] if len(args.compose_files) == 1 else \
        [args.out.with_name(f"{args.out.stem}.{i}{args.out.suffix}") for i in range(len(args.compose_files))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for source, out in zip(args.compose_files, outs):
        try:
            compose = yaml.safe_load(source.read_text())
        except (OSError, yaml.YAMLError) as exc:
            print(f"swarm_stack: cannot read {source}: {exc}", file=sys.stderr)
            return 2
        out.write_text(f"# Generated from {source} by scripts/swarm_stack.py (Swarm's stack format).\n"
                       + yaml.safe_dump(stack_file(compose, source.resolve().parent), sort_keys=False))
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
