"""`python -m launch.reproduce images --preset=tiny` end to end, on a tiny Fashion-MNIST
prepared from generated IDX files through the real `prepare_data` code."""

import json
import os

import numpy as np

from framework.data.image_prepare import fashion_mnist
from framework.experiments.tables import row_slug
from projects.adatape import image_table
from tests.launch import cli
from tests.launch.test_prepare_images import write_idx

SHOWN = ["ViT", "AdaTape (input-driven bank)"]


def test_images_tiny_table_end_to_end(tmp_path):
    rng = np.random.default_rng(0)
    source = tmp_path / "idx"
    source.mkdir()
    for prefix, n in (("train", 64), ("t10k", 40)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28)) + 19 * labels[:, None, None]  # learnable
        write_idx(source / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(source / f"{prefix}-labels-idx1-ubyte.gz", labels)
    data_dir = tmp_path / "tfds"
    fashion_mnist.prepare_fashion_mnist(str(data_dir), source_dir=str(source))

    workdir = tmp_path / "table"
    env = {"TFDS_DATA_DIR": str(data_dir)}
    # Two of the six rows (the other models train in tests/projects).
    result = cli.run(
        "launch.reproduce",
        "images",
        "--preset=tiny",
        f"--rows={','.join(row_slug(name) for name in SHOWN)}",
        f"--workdir={workdir}",
        extra_env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    with open(workdir / "results.json") as f:
        results = json.load(f)
    rows = results["rows"]
    assert list(rows) == SHOWN
    for name, row in rows.items():
        assert 0.0 <= row["eval.accuracy"]["mean"] <= 1.0
        assert row["train_images_per_sec"]["mean"] > 0
        assert row["eval_images_per_sec"]["mean"] > 0
        assert row["flops_per_example"]["mean"] > 0
    assert 1 <= rows["AdaTape (input-driven bank)"]["eval.tape_length"]["mean"] <= 5
    table = (workdir / "table.md").read_text()
    assert all(f"| {name} |" in table for name in SHOWN)

    for picture in ("accuracy_vs_speed.png", "selection_heatmap.png"):
        with open(workdir / picture, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # The heatmap counts, per bank patch, the fraction of the 40 test images reading it:
    # every image reads between 5 (one read) and 25 (5 reads x 5 candidates) patches.
    frequency = np.load(workdir / "selection_frequency.npy")
    assert frequency.shape == (7, 7)
    assert 5 <= frequency.sum() <= 25 and frequency.max() <= 1.0
    assert os.path.exists(workdir / image_table.SPEED_FILE)
