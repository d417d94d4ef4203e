"""Parsers for docker-compose.yml, docker/Dockerfile*, .dockerignore and the constants the docker tests share.

No Docker engine is needed: the files are read as text (YAML for compose) and interpreted here.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
MILVUS_COMPOSE_FILE = ROOT / "docker-compose.milvus.yml"  # added to COMPOSE_FILE: Milvus and N API replicas
DOCKERFILES = {"cpu": ROOT / "docker" / "Dockerfile", "cuda": ROOT / "docker" / "Dockerfile.cuda"}
HEALTHCHECK_SCRIPT = ROOT / "docker" / "healthcheck.py"
VOLUME = "arcsearch-data"
MOUNT = "/data"
ONE_SHOT_PREFIXES = ("prepare", "train", "index")
COMPLETED = "service_completed_successfully"
SERVICE_UID = "10001"


# ---------------------------------------------------------------- compose helpers


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


def torch_pin_of_makefile() -> str:
    match = re.search(r"^TORCH_SPEC\s*\?=\s*torch==(\S+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile no longer pins torch in TORCH_SPEC"
    return match.group(1)


def project_packages() -> list[str]:
    """The top-level source folders the project installs from (pyproject's package-dir values)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return sorted({folder.split("/")[0] for folder in pyproject["tool"]["setuptools"]["package-dir"].values()})


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


# ---------------------------------------------------------------- what a compose service runs


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
