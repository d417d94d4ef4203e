"""The domain (service/core/) imports no HTTP framework and nothing of the edge (service/ outside core/)."""

from __future__ import annotations

import ast

from tests.bundles import REPO

CORE = REPO / "service" / "core"
FRAMEWORKS = ("fastapi", "starlette", "uvicorn", "multipart", "prometheus_client", "pydantic_settings")
DOMAIN = "arcsearch.service.core"


def imported_modules(source: str) -> list[str]:
    """Every module ``source`` imports, anywhere in it (also inside functions and ``if TYPE_CHECKING``);
    a relative import as ``.name`` (dots for its level)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def forbidden(module: str) -> bool:
    """A framework, an edge module (``arcsearch.service.*`` outside core), or a relative import."""
    if module.startswith("."):
        return True
    if module.split(".")[0] in FRAMEWORKS:
        return True
    in_service = module == "arcsearch.service" or module.startswith("arcsearch.service.")
    return in_service and not (module == DOMAIN or module.startswith(DOMAIN + "."))


def test_the_checker_sees_every_kind_of_edge_import() -> None:
    source = ("import fastapi\nfrom starlette.concurrency import run_in_threadpool\n"
              "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
              "    from arcsearch.service.settings import Settings\n"
              "def f():\n    from arcsearch.service import schemas\n    from . import errors\n"
              "from arcsearch.service.core.errors import DomainError\nfrom arcsearch.index.store import IndexStore\n")
    assert [m for m in imported_modules(source) if forbidden(m)] == [
        "fastapi", "starlette.concurrency", "arcsearch.service.settings", "arcsearch.service", "."]


def test_the_domain_imports_no_framework_and_no_edge_module() -> None:
    files = sorted(CORE.glob("*.py"))
    assert len(files) >= 10
    found = {f"{path.name}: {module}" for path in files
             for module in imported_modules(path.read_text(encoding="utf-8")) if forbidden(module)}
    assert not found, f"service/core/ must not import these (pass plain values in instead): {sorted(found)}"


def declared(protocol: type) -> set[str]:
    """The attribute and method names a protocol (with its protocol bases) declares."""
    return {name for cls in protocol.__mro__ if cls.__dict__.get("_is_protocol") and cls.__name__ != "Protocol"
            for name, value in vars(cls).items() if isinstance(value, property) or callable(value)
            if not name.startswith("_")}


def test_the_edge_gives_the_domain_what_its_protocols_declare() -> None:
    """The domain reads Settings and Metrics through protocols; a renamed setting would fail only at run time."""
    from arcsearch.service.core.config import JobSettings, Observers, RegistrySettings
    from arcsearch.service.metrics import Metrics
    from arcsearch.service.settings import Settings

    settings = Settings()
    assert "sqlite_busy_timeout_s" in declared(JobSettings) and "data_root" in declared(RegistrySettings)
    for protocol in (RegistrySettings, JobSettings):
        assert [name for name in sorted(declared(protocol)) if not hasattr(settings, name)] == []
    assert declared(Observers) == {"batch_observer", "stage_observer"}
    assert all(callable(getattr(Metrics, name, None)) for name in declared(Observers))
