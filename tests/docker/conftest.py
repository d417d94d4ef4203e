"""Fixtures for tests/docker: the parsed compose file, the real ``arcsearch`` parser, each Dockerfile."""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import yaml

from tests.docker.parsing import COMPOSE_FILE, DOCKERFILES, Dockerfile, parse_dockerfile


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


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, Dockerfile]:
    path = DOCKERFILES[request.param]
    assert path.is_file(), f"{path} is missing"
    return request.param, parse_dockerfile(path)
