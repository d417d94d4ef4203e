"""Parsing WordNet 3.0 data files into labelled texts: a synset's gloss, labelled by its hypernym (many
narrow classes) or by its lexicographer file (45 broad classes: noun.animal, verb.motion, adj.all, ...).

Each data line is ``offset lex_filenum ss_type w_cnt word lex_id ... p_cnt [ptr...] | gloss``.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HYPERNYM_POINTERS = frozenset({"@", "@i"})


@dataclass(frozen=True)
class Synset:
    """One WordNet synset: key like ``n07716358``, its lemmas, gloss (no examples), hypernym key and
    lexicographer file number (an index into the ``lexnames`` file)."""

    key: str
    lemmas: tuple[str, ...]
    gloss: str
    hypernym: str | None
    lexfile: int = -1


def parse_data_line(line: str, pos: str) -> Synset | None:
    """Parse one line of a ``data.*`` file; returns None for the licence header lines."""
    if line.startswith("  ") or " | " not in line:
        return None
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    word_count = int(fields[3], 16)
    lemmas = tuple(fields[4 + 2 * i].replace("_", " ") for i in range(word_count))
    at = 4 + 2 * word_count
    pointer_count = int(fields[at])
    hypernym = None
    for j in range(pointer_count):
        symbol, offset, target_pos = fields[at + 1 + 4 * j: at + 4 + 4 * j]
        if symbol in HYPERNYM_POINTERS:
            hypernym = f"{target_pos}{offset}"
            break
    definition = gloss.split('; "')[0].strip().rstrip(";").strip()
    return Synset(key=f"{pos}{fields[0]}", lemmas=lemmas, gloss=definition, hypernym=hypernym,
                  lexfile=int(fields[1]))


def read_synsets(files: dict[Path, str]) -> dict[str, Synset]:
    """Read data files (path -> part-of-speech letter) into synsets keyed by ``pos + offset``."""
    synsets: dict[str, Synset] = {}
    for path, pos in files.items():
        for line in path.read_text(encoding="latin-1").splitlines():
            synset = parse_data_line(line, pos)
            if synset is not None:
                synsets[synset.key] = synset
    return synsets


def read_lexnames(path: Path) -> dict[int, str]:
    """The ``lexnames`` file: lexicographer file number -> name, e.g. ``5 -> "noun.animal"``."""
    names = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        fields = line.split()
        if len(fields) >= 2:
            names[int(fields[0])] = fields[1]
    return names


def _distinct_glosses(synsets: dict[str, Synset], keep: Callable[[Synset], bool]) -> list[Synset]:
    """Synsets in key order that ``keep`` accepts, whose gloss is long enough (>= 12 characters) and not the
    gloss of one kept before."""
    seen_texts: set[str] = set()
    kept = []
    for synset in sorted(synsets.values(), key=lambda s: s.key):
        if keep(synset) and len(synset.gloss) >= 12 and synset.gloss not in seen_texts:
            seen_texts.add(synset.gloss)
            kept.append(synset)
    return kept


def _row(synset: Synset, label: str) -> dict[str, str]:
    return {"id": synset.key, "text": synset.gloss, "label": label, "lemmas": ", ".join(synset.lemmas)}


def lexfile_classes(synsets: dict[str, Synset], lexnames: dict[int, str], *, max_size: int,
                    seed: int = 0) -> list[dict[str, str]]:
    """Group glosses by lexicographer file (few broad classes); a seeded random ``max_size`` of each.

    Returns JSONL rows ``{"id", "text", "label", "lemmas"}`` with ``label`` the file's name, in key order.
    """
    groups: dict[str, list[Synset]] = defaultdict(list)
    for synset in _distinct_glosses(synsets, lambda s: s.lexfile in lexnames):
        groups[lexnames[synset.lexfile]].append(synset)
    rng = random.Random(seed)
    rows = []
    for label in sorted(groups):
        members = groups[label]
        picked = sorted(rng.sample(members, min(max_size, len(members))), key=lambda s: s.key)
        rows.extend(_row(synset, label) for synset in picked)
    return rows


def gloss_classes(synsets: dict[str, Synset], *, min_size: int, max_size: int, num_classes: int,
                  seed: int = 0) -> list[dict[str, str]]:
    """Group glosses by hypernym; keep ``num_classes`` random groups with >= ``min_size`` distinct glosses.

    Returns JSONL rows ``{"id", "text", "label", "lemmas"}``; each group is capped at ``max_size``
    glosses, and a gloss shared by two synsets is kept once only.
    """
    groups: dict[str, list[Synset]] = defaultdict(list)
    for synset in _distinct_glosses(synsets, lambda s: s.hypernym in synsets):
        groups[synset.hypernym].append(synset)
    eligible = sorted(key for key, members in groups.items() if len(members) >= min_size)
    chosen = random.Random(seed).sample(eligible, min(num_classes, len(eligible)))
    rows = []
    for hypernym_key in sorted(chosen):
        hypernym = synsets[hypernym_key]
        label = f"{hypernym.lemmas[0].replace(' ', '_')}.{hypernym_key}"
        rows.extend(_row(synset, label) for synset in groups[hypernym_key][:max_size])
    return rows
