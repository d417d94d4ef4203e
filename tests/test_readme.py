"""The README and docs/*.md say only what the project does: every command, flag, make target, bench module,
repository path, relative link and ARCSEARCH_* variable they name exists, and the blocks marked runnable run.

Commands are read from fenced code blocks and inline code spans. A fenced block right after a line
``<!-- runnable -->`` is executed with bash (``arcsearch`` is this checkout's ``python -m arcsearch``).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, get_args, get_origin

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from arcsearch.cli import build_parser
from arcsearch.service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUNNABLE_MARK = "<!-- runnable -->"
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", ";;"}
REPO_DIRS = ("arcsearch", "bench", "docker", "docs", "index", "service", "tests", "training")
SETTINGS_ROW = re.compile(r"^\|\s*`(ARCSEARCH_[A-Z0-9_]+)`\s*\|", re.MULTILINE)
# read by the tests themselves, not by the service (the browser test, the cached test data)
HARNESS_VARIABLES = {"ARCSEARCH_REQUIRE_BROWSER", "ARCSEARCH_REQUIRE_CHROMA", "ARCSEARCH_REQUIRE_MILVUS",
                     "ARCSEARCH_TEST_DATA"}
RUN_TIMEOUT_S = 120
MIB = 1024 * 1024


@dataclass(frozen=True)
class Snippet:
    """Code from one document: a fenced block or an inline span; ``line`` is 1-based."""

    doc: Path
    line: int
    text: str
    runnable: bool = False

    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def _snippets(doc: Path) -> Iterator[Snippet]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    prose = list(lines)  # the document with fenced blocks blanked out, for inline spans
    number = 0
    while number < len(lines):
        if lines[number].lstrip().startswith("```"):
            start, body = number, []
            prose[number] = ""
            number += 1
            while number < len(lines) and not lines[number].lstrip().startswith("```"):
                body.append(lines[number])
                prose[number] = ""
                number += 1
            prose[min(number, len(lines) - 1)] = ""
            runnable = start > 0 and lines[start - 1].strip() == RUNNABLE_MARK
            yield Snippet(doc, start + 2, "\n".join(body), runnable=runnable)
        number += 1
    text = "\n".join(prose)
    for match in re.finditer(r"`([^`]+)`", text):  # an inline span may wrap onto the next line
        if "\n\n" not in match.group(1):
            yield Snippet(doc, text.count("\n", 0, match.start()) + 1, match.group(1).replace("\n", " "))


@cache
def all_snippets() -> tuple[Snippet, ...]:
    return tuple(snippet for doc in DOCS for snippet in _snippets(doc))


def _tokens(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in prose: split on blanks
        return line.split("#", 1)[0].split()


def commands(snippet: Snippet) -> Iterator[list[str]]:
    """Each simple command of a snippet as a token list (continuation lines joined, comments dropped)."""
    for line in snippet.text.replace("\\\n", " ").splitlines():
        command: list[str] = []
        for token in _tokens(line):
            if token in SEPARATORS:
                if command:
                    yield command
                command = []
            else:
                command.append(token)
        if command:
            yield command


def _long_flags(tokens: list[str]) -> list[str]:
    return [token.split("=", 1)[0] for token in tokens if token.startswith("--") and len(token) > 2]


def _invocations(program: str, snippets: tuple[Snippet, ...] | None = None) -> Iterator[tuple[Snippet, list[str]]]:
    """(snippet, the tokens after ``program``) for every command that runs ``program`` (also via a path)."""
    for snippet in all_snippets() if snippets is None else snippets:
        for command in commands(snippet):
            for position, token in enumerate(command):
                if token == program or token.endswith("/" + program):
                    yield snippet, command[position + 1:]
                    break


# ---------------------------------------------------------------- (a) arcsearch subcommands and flags


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def stale_arcsearch_commands(snippets: tuple[Snippet, ...] | None = None) -> list[str]:
    """'where: problem' for each ``arcsearch <subcommand> --flag`` the docs name that the CLI lacks."""
    subparsers, top = _subparsers(), build_parser()
    problems = []
    for snippet, args in _invocations("arcsearch", snippets):
        while args and args[0].startswith("-"):  # options before the subcommand, e.g. -v
            problems += [f"{snippet.where()}: `arcsearch` has no option {flag}"
                         for flag in _long_flags(args[:1]) if flag not in top._option_string_actions]
            args = args[1:]
        if not args or args[0] in {"...", "…"}:
            continue
        if args[0] not in subparsers:
            problems.append(f"{snippet.where()}: `arcsearch {args[0]}` is not a subcommand")
            continue
        known = subparsers[args[0]]._option_string_actions
        problems += [f"{snippet.where()}: `arcsearch {args[0]}` has no flag {flag}"
                     for flag in _long_flags(args[1:]) if flag not in known]
    return problems


def test_every_arcsearch_command_and_flag_in_the_docs_exists() -> None:
    problems = stale_arcsearch_commands()
    assert not problems, "\n".join(problems)


def test_the_checker_catches_a_stale_subcommand_and_flag() -> None:
    stale = (Snippet(ROOT / "README.md", 7, "the output of arcsearch export"),
             Snippet(ROOT / "README.md", 9, "x=1 arcsearch index --source a \\\n  --no-such-flag  # --fine"),
             Snippet(ROOT / "README.md", 12, ".venv/bin/arcsearch serve --port 1 && arcsearch -v train --help"))
    assert stale_arcsearch_commands(stale) == ["README.md:7: `arcsearch export` is not a subcommand",
                                               "README.md:9: `arcsearch index` has no flag --no-such-flag"]


# ---------------------------------------------------------------- (b) make targets


def _make_targets() -> set[str]:
    rules = re.findall(r"^([A-Za-z0-9_.$()/ -]+?)\s*:(?!=)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    return {target for rule in rules for target in rule.split() if not target.startswith(".")}


def test_every_make_target_in_the_docs_exists() -> None:
    targets, missing = _make_targets(), []
    for snippet, args in _invocations("make"):
        named = [arg for arg in args if not arg.startswith("-") and "=" not in arg]
        missing += [f"{snippet.where()}: make {name}" for name in named if name not in targets]
    assert not missing, "\n".join(missing)


# ---------------------------------------------------------------- (c) relative links and repository paths


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, blanks to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.DOTALL)
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE):
        base, suffix = _anchor(heading), 0
        while (f"{base}-{suffix}" if suffix else base) in anchors:
            suffix += 1
        anchors.add(f"{base}-{suffix}" if suffix else base)
    return anchors


def _links(doc: Path) -> Iterator[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.DOTALL)
    yield from re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", re.sub(r"`[^`\n]*`", "", text))


def test_every_relative_link_and_anchor_in_the_docs_resolves() -> None:
    broken = []
    for doc in DOCS:
        for link in _links(doc):
            if re.match(r"[a-z]+:", link):
                continue
            path, _, anchor = link.partition("#")
            target = (doc.parent / path).resolve() if path else doc
            if not target.exists():
                broken.append(f"{doc.relative_to(ROOT)}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
                broken.append(f"{doc.relative_to(ROOT)}: {link} (no such heading)")
    assert not broken, "\n".join(broken)


def test_every_repository_path_in_the_docs_exists() -> None:
    pattern = re.compile(rf"^(?:{'|'.join(REPO_DIRS)})/[\w./-]*\w$")
    missing = []
    for snippet in all_snippets():
        for command in commands(snippet):
            for token in command:
                path = token.split("::", 1)[0]
                if pattern.match(path) and not (ROOT / path).exists():
                    missing.append(f"{snippet.where()}: {path}")
    assert not missing, "\n".join(missing)


# ---------------------------------------------------------------- (d) bench modules and their flags


@cache
def _bench_help(module: str) -> str:
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=RUN_TIMEOUT_S, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, f"python -m {module} --help failed:\n{result.stderr}"
    return result.stdout


def test_every_bench_module_and_flag_in_the_docs_exists() -> None:
    problems = []
    for snippet, args in _invocations("-m"):
        if not args or not args[0].startswith("bench."):
            continue
        module = args[0]
        if not (ROOT / (module.replace(".", "/") + ".py")).is_file():
            problems.append(f"{snippet.where()}: no module {module}")
            continue
        known = set(re.findall(r"--[\w-]+", _bench_help(module)))
        problems += [f"{snippet.where()}: {module} has no flag {flag}"
                     for flag in _long_flags(args[1:]) if flag not in known]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- (e) ARCSEARCH_* variables


def _setting_variables() -> set[str]:
    prefix = Settings.model_config["env_prefix"]
    return {prefix + name.upper() for name in Settings.model_fields}


def unknown_variables() -> list[str]:
    """ARCSEARCH_* names in the docs that are neither a setting nor a variable the tests read."""
    known = _setting_variables() | HARNESS_VARIABLES
    return sorted({f"{doc.relative_to(ROOT)}: {name}" for doc in DOCS
                   for name in re.findall(r"\bARCSEARCH_[A-Z0-9_]*[A-Z0-9]\b", doc.read_text(encoding="utf-8"))
                   if name not in known})


def test_every_arcsearch_variable_in_the_docs_is_a_setting() -> None:
    unknown = unknown_variables()
    assert not unknown, "\n".join(unknown)
    tests = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("*.py")
                      if path.resolve() != Path(__file__).resolve())
    assert {name for name in HARNESS_VARIABLES if name not in tests} == set(), "a harness variable no test reads"


def _kind(field: FieldInfo) -> str:
    """A setting's values in words: the choices of a Literal, else the type, with its bounds."""
    if get_origin(field.annotation) is Literal:
        return " \\| ".join(f"`{choice}`" for choice in get_args(field.annotation))
    names = {int: "integer", float: "number", bool: "`true` \\| `false`", str: "text", SecretStr: "secret text"}
    kind = next((name for kind, name in names.items() if field.annotation is kind), "path")
    bounds = {key: getattr(rule, key) for rule in field.metadata for key in ("ge", "le") if hasattr(rule, key)}
    if "ge" in bounds and "le" in bounds:
        return f"{kind} {bounds['ge']}–{bounds['le']}"
    return f"{kind} ≥ {bounds['ge']}" if "ge" in bounds else kind


def _default(field: FieldInfo) -> str:
    value = field.default.get_secret_value() if isinstance(field.default, SecretStr) else field.default
    if value in ("", None):
        return "(none)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int) and value >= MIB and value % MIB == 0:
        return f"`{value}` ({value // MIB} MiB)"
    return f"`{value}`"


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def settings_rows(names: set[str] | None = None) -> str:
    """Rows of docs/service.md's settings table (all, or those in ``names``), from ``Settings``' fields."""
    prefix = Settings.model_config["env_prefix"]
    return "\n".join(f"| `{prefix}{name.upper()}` | {_kind(field)} | {_default(field)} | {_cell(field.description)} |"
                     for name, field in Settings.model_fields.items()
                     if names is None or prefix + name.upper() in names)


def test_the_settings_table_lists_every_setting() -> None:
    documented = set(SETTINGS_ROW.findall((ROOT / "docs" / "service.md").read_text(encoding="utf-8")))
    missing = _setting_variables() - documented
    assert not missing, "docs/service.md lacks these rows (generated here):\n" + settings_rows(missing)


# ---------------------------------------------------------------- the runnable blocks


def test_the_runnable_blocks_run(tmp_path: Path) -> None:
    blocks = [snippet for snippet in all_snippets() if snippet.runnable]
    assert blocks, f"no block is marked {RUNNABLE_MARK}"
    shim = tmp_path / "bin" / "arcsearch"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m arcsearch "$@"\n')
    shim.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{shim.parent}{os.pathsep}{os.environ['PATH']}"}
    for block in blocks:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        assert result.returncode == 0, f"{block.where()} failed:\n{result.stderr[-2000:]}"
