"""torchrun with 2 CPU processes (gloo): each rank takes its strided shard; the union equals one process."""

import json

import pytest
import test_batch_assets
from test_batch_assets import BAD, GOOD, assert_same_bundle, engine_args, run_engine

batch_assets = test_batch_assets.batch_assets
reference_batch = test_batch_assets.reference_batch


@pytest.mark.slow
def test_two_gloo_ranks_split_the_list_and_their_union_equals_a_single_process_run(batch_assets, reference_batch,
                                                                                    tmp_path):
    out = tmp_path / "out"
    proc = run_engine("--standalone", "--nproc_per_node", "2", "-m", "engine", "batch", str(batch_assets["images"]),
                      "--out", str(out), *engine_args(batch_assets), prefix=("torch.distributed.run",))
    assert proc.returncode == 1, proc.stderr[-3000:]  # torchrun passes on rank 0's "some images failed"

    summary = json.loads((out / "batch-summary.json").read_text())
    names = sorted([*GOOD, BAD])
    assert [r["name"] for r in summary["items"]] == names
    assert {r["name"]: r["rank"] for r in summary["items"]} == {n: i % 2 for i, n in enumerate(names)}
    assert summary["world_size"] == 2 and summary["counts"] == {"pending": 0, "done": 5, "skipped": 0, "failed": 1}
    assert sorted(p.name for p in out.iterdir()) == sorted([*GOOD, "batch-summary.json", "batch-summary.csv"])

    reference, _ = reference_batch
    single = {r["name"]: r for r in json.loads((reference / "batch-summary.json").read_text())["items"]}
    for record in summary["items"]:
        assert record["status"] == single[record["name"]]["status"]
        assert record["metrics"] == single[record["name"]]["metrics"]
    for name in GOOD:
        assert_same_bundle(reference / name, out / name)
