"""Static checks of docker/Dockerfile*, .dockerignore, and docker/healthcheck.py run against a local server.

No Docker engine is needed: the Dockerfiles are parsed, and the health probe runs against a throwaway
server on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import os
import re
import shlex
import subprocess
import sys
import threading

import pytest

from tests.docker.parsing import (
    HEALTHCHECK_SCRIPT,
    MOUNT,
    ROOT,
    SERVICE_UID,
    Dockerfile,
    arg_defaults,
    copies,
    dockerignore_rules,
    env_values,
    exec_form,
    ignored,
    project_packages,
    torch_pin_of_makefile,
)

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


def test_dockerfile_healthcheck_probes_readyz(dockerfile: tuple[str, Dockerfile]) -> None:
    kind, parsed = dockerfile
    rest = parsed.final.last("HEALTHCHECK")
    assert rest and not rest.upper().startswith("NONE"), f"{kind}: no HEALTHCHECK"
    command = rest[rest.upper().index("CMD") + 3:].strip()
    argv = exec_form(command) or shlex.split(command)
    probe = " ".join(argv)
    for sources, destination, flags in copies(parsed.final):
        if destination in argv and "from" not in flags:
            probe = (ROOT / sources[0]).read_text(encoding="utf-8")
    assert "urllib" in probe and "127.0.0.1" in probe and "/readyz" in probe and "8000" in probe, probe[:300]
    assert "/healthz" not in probe, "the probe must wait for the collections (/readyz), not only the process"


# ================================================================ tests: .dockerignore and the probe


def test_dockerignore_keeps_data_and_environments_out() -> None:
    rules = dockerignore_rules()
    for path in (".venv", ".git", "data", "data/faces/s1/1.pgm", "artifacts", ".cache/test-data",
                 "training/__pycache__/x.pyc", "arcsearch.egg-info"):
        assert ignored(path, rules), f".dockerignore lets {path} into the build context"
    entries = [line.strip() for line in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()]
    for entry in (e for e in entries if e and not e.startswith("#")):
        sample = entry.strip("/").replace("*", "x")
        assert ignored(sample, rules), f".gitignore ignores {entry} but the build context keeps it"
        if not entry.startswith("/"):
            assert ignored(f"training/{sample}", rules), f"nested {entry} reaches the build context"
    for path in ("pyproject.toml", "README.md", "docker/healthcheck.py", "service/app.py"):
        assert not ignored(path, rules), f".dockerignore drops {path}"


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        code = self.status if self.path == "/readyz" else 404
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
