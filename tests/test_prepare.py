"""The prepare step writes the default data in the generic layouts, and a re-run does nothing."""

from __future__ import annotations

import json
from collections import Counter

from arcsearch.index.corpus import read_image_folder, read_text_file
from arcsearch.prepare.defaults import prepare_all
from arcsearch.prepare.wordnet import parse_data_line


def test_faces_are_forty_people_of_ten_images(prepared):
    items = read_image_folder(prepared.faces_dir)
    per_person = Counter(item.label for item in items)
    assert len(per_person) == 40
    assert set(per_person.values()) == {10}
    assert not any(item.path.name == "target.jpg" for item in items)


def test_wordnet_texts_are_grouped_by_hypernym(prepared):
    items = read_text_file(prepared.texts_file)
    per_label = Counter(item.label for item in items)
    assert len(per_label) == 600
    assert min(per_label.values()) >= 8 and max(per_label.values()) <= 10
    assert len({item.text for item in items}) == len(items), "a gloss appears twice"
    dogs = [item for item in items if item.metadata.get("lemmas", "").startswith("dog,")]
    assert all(not item.text.startswith('"') for item in dogs)


def test_lexfile_texts_are_45_broad_classes(prepared):
    items = read_text_file(prepared.lexfiles_file)
    per_label = Counter(item.label for item in items)
    assert len(per_label) == 45
    assert {"noun.animal", "noun.artifact", "verb.motion", "adj.all", "adv.all", "noun.Tops"} <= set(per_label)
    assert max(per_label.values()) == 150 and min(per_label.values()) >= 30
    assert len({item.text for item in items}) == len(items), "a gloss appears twice"
    pos_of_file = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
    assert all(item.label.split(".")[0] == pos_of_file[item.item_id[0]] for item in items), "a file of another pos"


def test_parse_data_line_reads_the_lexicographer_file():
    line = "02084071 05 n 01 dog 0 001 @ 02083346 n 0000 | a member of the genus Canis"
    synset = parse_data_line(line, "n")
    assert synset is not None and synset.lexfile == 5


def test_rerun_does_nothing(prepared):
    before = {p: p.stat().st_mtime_ns for p in (prepared.texts_file, prepared.lexfiles_file,
                                                 prepared.mobilenet_weights)}
    again = prepare_all(prepared.texts_file.parent)
    assert again == prepared
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_parse_data_line_reads_gloss_lemmas_and_hypernym():
    line = ("07716358 13 n 02 zucchini 0 courgette 0 002 @ 07715721 n 0000 #p 12159804 n 0000 "
            "| small cucumber-shaped vegetable marrow; typically dark green; \"an example\"  ")
    synset = parse_data_line(line, "n")
    assert synset is not None
    assert synset.key == "n07716358"
    assert synset.lemmas == ("zucchini", "courgette")
    assert synset.hypernym == "n07715721"
    assert synset.gloss == "small cucumber-shaped vegetable marrow; typically dark green"
    assert parse_data_line("  1 This software and database is being provided", "n") is None


def test_texts_file_is_valid_jsonl(prepared):
    rows = [json.loads(line) for line in prepared.texts_file.read_text().splitlines()]
    assert {"id", "text", "label", "lemmas"} <= set(rows[0])
