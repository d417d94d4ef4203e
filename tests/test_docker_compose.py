"""Static checks of docker-compose.yml, docker/Dockerfile*, .dockerignore and docker/healthcheck.py.

No Docker engine is needed: the files are parsed, every compose command is parsed by the real
``arcsearch`` argument parser, and the health probe runs against a throwaway server on 127.0.0.1.
When a compose binary is on PATH the file is also validated by ``docker compose config``.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILES = {"cpu": ROOT / "docker" / "Dockerfile", "cuda": ROOT / "docker" / "Dockerfile.cuda"}
HEALTHCHECK_SCRIPT = ROOT / "docker" / "healthcheck.py"
VOLUME = "arcsearch-data"
MOUNT = "/data"
ONE_SHOT_PREFIXES = ("prepare", "train", "index")
COMPLETED = "service_completed_successfully"
SERVICE_UID = "10001"


# ---------------------------------------------------------------- compose helpers


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict) and isinstance(loaded.get("services"), dict), "no services mapping"
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    try:
        from arcsearch.cli import build_parser
    except ImportError as exc:  # the CLI module must expose build_parser() -> ArgumentParser
        pytest.fail(f"arcsearch.cli.build_parser is not importable: {exc}")
    return build_parser()


def one_shots(services: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(name for name in services if name.startswith(ONE_SHOT_PREFIXES))


def named(services: dict[str, dict[str, Any]], prefix: str) -> list[str]:
    return sorted(name for name in services if name == prefix or name.startswith(prefix + "-"))


def as_argv(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on") or {}
    assert isinstance(deps, dict), "depends_on must be a mapping with conditions, not a list"
    return deps


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume entry, short or long syntax."""
    found = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            source, _, rest = entry.partition(":")
            found.append((source, rest.split(":")[0]))
        else:
            found.append((str(entry.get("source")), str(entry.get("target"))))
    return found


def published_ports(service: dict[str, Any]) -> list[tuple[str | None, str, str]]:
    """(host_ip, host_port, container_port) of each entry of ``ports``, short or long syntax."""
    found = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            found.append((entry.get("host_ip"), str(entry.get("published")), str(entry.get("target"))))
            continue
        parts = str(entry).split("/")[0].rsplit(":", 2)
        if len(parts) == 3:
            found.append((parts[0].strip("[]"), parts[1], parts[2]))
        elif len(parts) == 2:
            found.append((None, parts[0], parts[1]))
        else:
            found.append((None, "", parts[0]))
    return found


def build_of(service: dict[str, Any]) -> tuple[Path, Path] | None:
    build = service.get("build")
    if build is None:
        return None
    if isinstance(build, str):
        build = {"context": build}
    context = (ROOT / build.get("context", ".")).resolve()
    return context, (context / build.get("dockerfile", "Dockerfile")).resolve()


# ---------------------------------------------------------------- Dockerfile helpers


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def root_image(self, stage: Stage) -> str:
        """The registry image a stage starts from, following ``FROM <stage>`` chains."""
        by_name = {s.name: s for s in self.stages if s.name}
        seen = set()
        while stage.base in by_name and stage.base not in seen:
            seen.add(stage.base)
            stage = by_name[stage.base]
        return substitute(stage.base, self.global_args)


def substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values.get(m.group(1), m.group(0)), text)


def logical_lines(text: str) -> Iterator[str]:
    """Instructions with their line continuations joined; comments and blank lines dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    if pending:
        yield pending


def parse_dockerfile(path: Path) -> Dockerfile:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text(encoding="utf-8")):
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif not stages:
            assert keyword in {"ARG"}, f"{path.name}: {keyword} before the first FROM"
            global_args.update(arg_defaults(rest))
        else:
            stages[-1].instructions.append((keyword, rest))
    return Dockerfile(global_args=global_args, stages=stages)


def arg_defaults(rest: str) -> dict[str, str]:
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in shlex.split(rest))


def env_values(stage: Stage) -> dict[str, str]:
    values: dict[str, str] = {}
    for rest in stage.all("ENV"):
        words = shlex.split(rest)
        if words and "=" not in words[0]:  # legacy form: ENV KEY value
            values[words[0]] = " ".join(words[1:])
        else:
            values.update(word.split("=", 1) for word in words)
    return values


def exec_form(rest: str | None) -> list[str] | None:
    if rest is None:
        return None
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def copies(stage: Stage) -> list[tuple[list[str], str, dict[str, str]]]:
    """(sources, destination, flags) of each COPY/ADD in a stage."""
    found = []
    for keyword, rest in stage.instructions:
        if keyword not in {"COPY", "ADD"}:
            continue
        words = shlex.split(rest)
        flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--") and "=" in w)
        paths = [w for w in words if not w.startswith("--")]
        found.append((paths[:-1], paths[-1], flags))
    return found


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, Dockerfile]:
    path = DOCKERFILES[request.param]
    assert path.is_file(), f"{path} is missing"
    return request.param, parse_dockerfile(path)


def torch_pin_of_makefile() -> str:
    match = re.search(r"^TORCH_SPEC\s*\?=\s*torch==(\S+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile no longer pins torch in TORCH_SPEC"
    return match.group(1)


def project_packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.rstrip("*").split(".")[0] for pattern in patterns})


# ---------------------------------------------------------------- .dockerignore helpers


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per .dockerignore line, in file order (the last matching rule wins)."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        regex = ""
        for token in re.split(r"(\*\*/|\*\*|\*|\?|\[[^\]]*\])", pattern):
            if token == "**/":
                regex += "(?:.*/)?"
            elif token == "**":
                regex += ".*"
            elif token == "*":
                regex += "[^/]*"
            elif token == "?":
                regex += "[^/]"
            elif token.startswith("[") and token.endswith("]") and len(token) > 2:
                regex += token
            else:
                regex += re.escape(token)
        rules.append((negated, re.compile(regex + r"\Z")))
    return rules


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves ``path`` out (it or a parent matches a rule)."""
    parts = path.strip("/").split("/")
    result = False
    for negated, regex in rules:
        if any(regex.match("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            result = not negated
    return result


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
        assert env.get("ARCSEARCH_ALLOW_PUBLIC_BIND") in {"1", "true", "True"}, f"{name} would refuse 0.0.0.0"
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


def service_argv(service: dict[str, Any]) -> list[str]:
    """The process a service runs: its entrypoint/command, or those of the image it builds."""
    image = parse_dockerfile(build_of(service)[1]).final if build_of(service) else None
    entrypoint = as_argv(service.get("entrypoint"))
    if entrypoint is None and image is not None:
        entrypoint = exec_form(image.last("ENTRYPOINT"))
    command = as_argv(service.get("command"))
    if command is None and image is not None and service.get("entrypoint") is None:
        command = exec_form(image.last("CMD"))
    return (entrypoint or []) + (command or [])


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
    from training.prepare import MINILM_DIR, MOBILENET_FILE

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
        from service.settings import Settings
    except ImportError as exc:
        pytest.fail(f"service.settings.Settings is not importable: {exc}")
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


# ================================================================ tests: Dockerfiles


def test_dockerfile_base_and_runtime(dockerfile: tuple[str, Dockerfile]) -> None:
    kind, parsed = dockerfile
    assert parsed.stages, "no FROM"
    base = parsed.root_image(parsed.final)
    expected = "python:3.11" if kind == "cpu" else "nvidia/cuda:"
    assert base.startswith(expected), f"{kind} image starts from {base}"
    final = parsed.final
    assert "8000" in " ".join(final.all("EXPOSE")).replace("/tcp", "").split()
    assert exec_form(final.last("ENTRYPOINT")) == ["arcsearch"]
    assert exec_form(final.last("CMD")) == ["serve"]
    assert env_values(final).get("ARCSEARCH_HOST") == "0.0.0.0"
    if kind == "cuda":
        python = " ".join(rest for s in parsed.stages for rest in s.all("RUN"))
        assert "python3.11" in python, "the CUDA image does not install Python 3.11"


def test_dockerfile_runs_as_the_service_user(dockerfile: tuple[str, Dockerfile]) -> None:
    kind, parsed = dockerfile
    user = parsed.final.last("USER")
    assert user is not None, f"{kind}: no USER, the container would run as root"
    uid = user.split(":")[0]
    assert uid not in {"root", "0"}, f"{kind}: USER {user}"
    assert uid == SERVICE_UID, f"{kind}: USER {user}; both images must use uid {SERVICE_UID} (one volume)"
    runs = " ".join(parsed.final.all("RUN"))
    assert f"--uid {SERVICE_UID}" in runs, f"{kind}: the final stage does not create uid {SERVICE_UID}"
    assert "chown" in runs and MOUNT in runs, f"{kind}: {MOUNT} is not given to the service user"


def test_dockerfile_pins_torch_before_the_project(dockerfile: tuple[str, Dockerfile]) -> None:
    kind, parsed = dockerfile
    version = torch_pin_of_makefile()
    index_url = "/whl/cpu" if kind == "cpu" else "/whl/cu"
    pinned_in = []
    for stage in parsed.stages:
        spec = {}
        for rest in stage.all("ARG"):
            spec.update(arg_defaults(rest))
        runs = stage.all("RUN")
        uses = [i for i, run in enumerate(runs) if re.search(r"\$\{?TORCH_SPEC\}?", run)]
        if not uses:
            continue
        # An ARG from before FROM is not visible inside a stage unless the stage declares it again.
        assert "TORCH_SPEC" in spec, f"{kind}: a stage uses TORCH_SPEC without declaring ARG TORCH_SPEC"
        assert f"torch=={version}" in spec["TORCH_SPEC"].split(), f"{kind}: TORCH_SPEC is not torch=={version}"
        assert index_url in spec["TORCH_SPEC"], f"{kind}: TORCH_SPEC does not use the {index_url} index"
        project = [i for i, run in enumerate(runs) if re.search(r"pip install\b.*(\s\.(\s|$)|-r\s)", run)]
        assert project and min(uses) < min(project), f"{kind}: torch must be installed before the project"
        pinned_in.append(stage.name)
    assert pinned_in, f"{kind}: no RUN installs ${{TORCH_SPEC}}"


def test_dockerfile_copies_the_project(dockerfile: tuple[str, Dockerfile]) -> None:
    kind, parsed = dockerfile
    rules = dockerignore_rules()
    copied = set()
    for stage in parsed.stages:
        for sources, _, flags in copies(stage):
            if "from" in flags:
                continue
            for source in sources:
                if any(ch in source for ch in "*?["):
                    continue  # optional files, e.g. README.m[d]
                assert (ROOT / source).exists(), f"{kind}: COPY {source}: not in the repository"
                assert not ignored(source, rules), f"{kind}: COPY {source}: excluded by .dockerignore"
                copied.add(source.rstrip("/"))
    missing = {"pyproject.toml", *project_packages()} - copied
    assert not missing, f"{kind}: the image does not COPY {sorted(missing)}"


def test_dockerfile_healthcheck_probes_healthz(dockerfile: tuple[str, Dockerfile]) -> None:
    kind, parsed = dockerfile
    rest = parsed.final.last("HEALTHCHECK")
    assert rest and not rest.upper().startswith("NONE"), f"{kind}: no HEALTHCHECK"
    command = rest[rest.upper().index("CMD") + 3:].strip()
    argv = exec_form(command) or shlex.split(command)
    probe = " ".join(argv)
    for sources, destination, flags in copies(parsed.final):
        if destination in argv and "from" not in flags:
            probe = (ROOT / sources[0]).read_text(encoding="utf-8")
    assert "urllib" in probe and "127.0.0.1" in probe and "/healthz" in probe and "8000" in probe, probe[:300]


# ================================================================ tests: .dockerignore and the probe


def test_dockerignore_keeps_data_and_environments_out() -> None:
    rules = dockerignore_rules()
    for path in (".venv", ".git", "data", "data/faces/s1/1.pgm", "artifacts", ".cache/test-data",
                 "training/__pycache__/x.pyc", "arcsearch.egg-info"):
        assert ignored(path, rules), f".dockerignore lets {path} into the build context"
    for entry in (ROOT / ".gitignore").read_text(encoding="utf-8").split():
        sample = entry.strip("/").replace("*", "x")
        assert ignored(sample, rules), f".gitignore ignores {entry} but the build context keeps it"
        if not entry.startswith("/"):
            assert ignored(f"training/{sample}", rules), f"nested {entry} reaches the build context"
    for path in ("pyproject.toml", "README.md", "docker/healthcheck.py", "service/app.py"):
        assert not ignored(path, rules), f".dockerignore drops {path}"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def run_probe(port: int) -> int:
    env = {**os.environ, "ARCSEARCH_PORT": str(port), "ARCSEARCH_HEALTHCHECK_TIMEOUT_S": "3",
           "HTTP_PROXY": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, str(HEALTHCHECK_SCRIPT)], env=env, capture_output=True,
                            text=True, timeout=30, check=False)
    return result.returncode


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_script(status: int, healthy: bool) -> None:
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert (run_probe(server.server_address[1]) == 0) is healthy
    finally:
        server.shutdown()
        server.server_close()
    assert run_probe(server.server_address[1]) != 0, "a closed port must read as unhealthy"


# ================================================================ optional: the real compose binary


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_compose_config_validates() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose binary on PATH")
    for profile in ([], ["--profile", "gpu"]):
        result = subprocess.run([*command, "-f", str(COMPOSE_FILE), *profile, "config", "--quiet"], cwd=ROOT,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
