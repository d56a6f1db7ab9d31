"""Reading a result file's provenance back and naming how it differs from a new run's."""

from __future__ import annotations

from pathlib import Path

import torch

from vizcnn.io.imaging import save_png
from vizcnn.io.provenance import provenance
from vizcnn.io.resume import first_difference, stored_provenance


def _block(**options: object) -> dict[str, object]:
    return provenance(
        technique="render", model_name="m", weights="w", options=options, seed=0, command=["x"]
    )


def test_stored_block_round_trips_and_the_first_difference_is_named(tmp_path: Path) -> None:
    block = _block(steps=6, lr=0.05)
    path = tmp_path / "a.png"
    save_png(torch.zeros(3, 4, 4), path, {"provenance": block, "unit": "x:1"})
    stored = stored_provenance(path)
    assert stored == block
    assert first_difference(stored, _block(steps=6, lr=0.05)) is None
    assert first_difference(stored, _block(steps=8, lr=0.05)) == "steps 6 in the file, 8 now"
    assert first_difference(stored, {**block, "seed": 3}) == "seed 0 in the file, 3 now"
    several = first_difference(_block(a=1, b=1, c=1, d=1, e=1), _block(a=2, b=2, c=2, d=2, e=2))
    assert several == (
        "a 1 in the file, 2 now; b 1 in the file, 2 now; c 1 in the file, 2 now and 2 more"
    )
    # a file without a block (older vizcnn, or someone else's PNG) differs
    plain = tmp_path / "b.png"
    save_png(torch.zeros(3, 4, 4), plain)
    assert stored_provenance(plain) == {}
    assert first_difference({}, block) is not None


def test_changed_weights_name_the_options_a_user_changes() -> None:
    block = _block(steps=6)
    other = {**block, "weights_digest": "0123"}
    message = first_difference({**block, "weights_digest": "abcd"}, other)
    assert message is not None and "weights=..." in message and "seed=..." in message
    from vizcnn.cli.flags import as_flags

    assert "(--weights, or --seed with --weights none)" in as_flags(message)


def test_stored_provenance_reads_png_chunk_and_json_key(tmp_path: Path) -> None:
    import json

    block = {"technique": "t", "seed": 3, "options": {"steps": 2}}
    save_png(torch.zeros(3, 4, 4), tmp_path / "a.png", {"provenance": block})
    (tmp_path / "a.json").write_text(json.dumps({"provenance": block, "result": [1]}))
    (tmp_path / "flat.json").write_text(json.dumps({"technique": "t"}))  # no block: nothing read
    (tmp_path / "bad.json").write_text("{not json")
    assert stored_provenance(tmp_path / "a.png") == block
    assert stored_provenance(tmp_path / "a.json") == block
    assert stored_provenance(tmp_path / "flat.json") == {}
    assert stored_provenance(tmp_path / "bad.json") == {}
    assert stored_provenance(tmp_path / "missing.json") == {}
