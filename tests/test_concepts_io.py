"""concepts.json / concepts.csv round trip, validation and concept resolution."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import pytest

from vsae.analysis import Concept, ConceptError, ConceptTable, Thresholds, load_concepts, resolve


def _table() -> ConceptTable:
    th = Thresholds(min_score=0.2, min_margin=0.02, min_freq=0.001)
    rows = [
        ("red", 0.5, 0.1, 0.05),
        ("blue", 0.4, 0.05, 0.02),
        ("red", 0.3, 0.01, 0.04),
        ("", 0, 0, 0),
    ]
    concepts = tuple(
        Concept(
            id=i,
            name=n,
            score=s,
            margin=m,
            top_words=(n, "circle") if n else (),
            freq=f,
            mean_act=1.5 * i,
            top_ids=(3, 1) if n else (),
            valid=bool(n) and th.passes(s, m, f),
        )
        for i, (n, s, m, f) in enumerate(rows)
    )
    return ConceptTable(concepts, thresholds=th, vocab={"name": "world", "size": 2})


def test_round_trip_json_and_csv(tmp_path):
    table = _table()
    json_path, csv_path = table.save(tmp_path)
    back = load_concepts(tmp_path)
    # purity is NaN without labels (NaN != NaN), so compare it apart
    assert [replace(c, purity=0.0, agreement=0.0) for c in back.concepts] == [
        replace(c, purity=0.0, agreement=0.0) for c in table.concepts
    ]
    assert all(math.isnan(c.purity) for c in back.concepts)
    assert back.thresholds == table.thresholds
    assert [c.id for c in back.valid] == [0, 1]  # record 2 fails min_margin
    data = json.loads(json_path.read_text())
    assert data["n_latents"] == 4 and data["n_valid"] == 2
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["name"] for r in rows] == ["red", "blue", "red", ""]
    assert rows[0]["top_ids"] == "3 1" and rows[2]["valid"] == "0"


def test_resolve_by_name_id_and_suggestions():
    table = _table()
    assert resolve(table, "red") == 0  # the valid, best-scoring 'red'
    assert resolve(table, "#2") == 2 and resolve(table, 1) == 1
    with pytest.raises(ConceptError, match="out of range; expected 0..3"):
        resolve(table, "#4")
    with pytest.raises(ConceptError, match="closest names: red"):
        resolve(table, "redd")


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(ConceptError, match="vsae concepts name"):
        load_concepts(tmp_path)
    (tmp_path / "concepts.json").write_text("{not json")
    with pytest.raises(ConceptError, match="not valid JSON"):
        load_concepts(tmp_path)
    (tmp_path / "concepts.json").write_text(json.dumps({"format_version": 9}))
    with pytest.raises(ConceptError, match="format_version=9"):
        load_concepts(tmp_path)
    with pytest.raises(ConceptError, match="has id 5"):
        ConceptTable((Concept(5, "x", 0.0, 0.0, (), 0.0, 0.0),))
