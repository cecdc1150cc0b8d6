"""`batch` end to end: a corrupt image fails alone, the summary names it; the listing, naming and sharding rules."""

import csv
import json
import os
from pathlib import Path

import pytest
import test_batch_assets
from test_batch_assets import BAD, GOOD

from engine import bundle
from engine.batch import make_items, shard
from engine.batch.items import list_images
from engine.batch.pool import WorkerPool
from engine.errors import EngineError

batch_assets = test_batch_assets.batch_assets
reference_batch = test_batch_assets.reference_batch


@pytest.mark.slow
def test_corrupt_image_is_recorded_and_the_other_five_become_bundles(reference_batch):
    out, code = reference_batch
    assert code == 1  # some images failed
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(GOOD)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no partial bundles, no stale state
    for name in GOOD:
        data = bundle.read(out / name)  # complete and valid, mesh exported
        assert (out / name / data["files"]["mesh_glb"]).is_file()

    summary = json.loads((out / "batch-summary.json").read_text())
    assert summary["counts"] == {"pending": 0, "done": 5, "skipped": 0, "failed": 1}
    assert [r["name"] for r in summary["items"]] == sorted([*GOOD, BAD])  # input order
    items = {r["name"]: r for r in summary["items"]}
    assert items[BAD]["status"] == "failed" and f"{BAD}.png" in items[BAD]["error"]
    assert items[BAD]["bundle"] is None
    for name in GOOD:
        r = items[name]
        assert r["status"] == "done" and r["error"] is None and r["seconds"] > 0
        assert r["bundle"] == name and r["glb"] == f"{name}/mesh.glb"
        losses = bundle.read(out / name)["metrics"]["loss"]
        assert r["metrics"] == {f"loss.{k}": v for k, v in losses.items()}

    with open(out / "batch-summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [row["name"] for row in rows] == [r["name"] for r in summary["items"]]
    assert {row["name"]: row["status"] for row in rows} == {n: r["status"] for n, r in items.items()}
    assert rows[[row["name"] for row in rows].index(BAD)]["error"] == items[BAD]["error"]
    assert float(next(row for row in rows if row["name"] == "cat")["loss.stage0_step1"]) == pytest.approx(
        items["cat"]["metrics"]["loss.stage0_step1"])


def test_folder_listing_list_file_and_unique_names(tmp_path):
    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    listing = tmp_path / "list.txt"
    listing.write_text("# photos\nb.png\n\n  sub/a.png \na.JPG\n")
    images = list_images(listing)
    assert images == [tmp_path / "b.png", tmp_path / "sub/a.png", tmp_path / "a.JPG"]
    assert [i.name for i in make_items(images)] == ["b", "a", "a_2"]  # repeated stems stay apart
    with pytest.raises(EngineError, match="no images"):
        make_items([])
    with pytest.raises(EngineError, match="not a folder or a readable image list"):
        list_images(tmp_path / "missing")


def test_shards_are_strided_disjoint_and_cover_the_list():
    items = make_items([Path(f"{i}.png") for i in range(7)])
    shards = [shard(items, r, 3) for r in range(3)]
    assert [i.index for i in shards[1]] == [1, 4]  # rank r gets images r, r + W, … (official `independent`)
    assert sorted(i.index for s in shards for i in s) == list(range(7))


def crash_on_three(x: int) -> int:
    """A task for the pool test: the worker dies (as on an out-of-memory kill) on item 3."""
    if x == 3:
        os._exit(9)
    return x * 10


def test_a_dying_worker_fails_only_its_item():
    pool = WorkerPool(crash_on_three, workers=2, threads=1, on_crash=lambda index, code: f"crash {index} {code}")
    results = dict(pool.run([1, 2, 3, 4, 5]))
    assert results == {0: 10, 1: 20, 2: "crash 2 9", 3: 40, 4: 50}
