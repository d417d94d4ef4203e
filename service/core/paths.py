"""Paths as clients see them: relative to the data root or the collections folder, never absolute.

Answers, job errors and readiness problems name files; the server's own layout (where its folders live)
is not the client's business. A path below a root shows relative to it, a root itself by its folder
name, and any other absolute path by its last component only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from arcsearch.service.core.config import RootSettings

# an absolute path inside free text: a "/" that does not continue a word, a URL or a relative path
PATH_TOKEN = re.compile(r"(?<![\w.~/:\\-])/[^\s'\"`,;()\[\]{}<>]+")
TRAILING_PUNCTUATION = ".:"


def root_forms(roots: Sequence[Path]) -> list[PurePosixPath]:
    """Each root as given (made absolute) and with its symlinks resolved, deepest first."""
    forms = {PurePosixPath(form) for root in roots for form in (Path(root).absolute(), Path(root).resolve())}
    return sorted(forms, key=lambda form: len(form.parts), reverse=True)


def settings_roots(settings: RootSettings) -> list[PurePosixPath]:
    """The roots a client may see paths below: the data root and the collections folder."""
    return root_forms([settings.data_root, settings.collections_dir])


def display_path(path: str | Path, roots: Sequence[PurePosixPath]) -> str:
    """``path`` relative to the deepest root that holds it (a root itself: its folder name); an absolute
    path outside every root: its last component; a relative path: unchanged."""
    text = str(path)
    candidate = PurePosixPath(text)
    if not text or not candidate.is_absolute():
        return text
    for root in roots:
        if candidate == root:
            return root.name
        if candidate.is_relative_to(root):
            return str(candidate.relative_to(root))
    return candidate.name


def scrub_paths(text: str, roots: Sequence[PurePosixPath]) -> str:
    """``text`` (an error message) with every absolute path in it shown as ``display_path`` shows it."""
    def shown(match: re.Match[str]) -> str:
        token = match.group(0)
        core = token.rstrip(TRAILING_PUNCTUATION)
        return display_path(core, roots) + token[len(core):]
    return PATH_TOKEN.sub(shown, text)
