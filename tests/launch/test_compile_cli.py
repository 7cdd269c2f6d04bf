"""`launch.compile` as a user runs it: a layout over HBM is refused in one line, with the
report as JSON on stdout."""

import json

import pytest

from tests.launch import cli


def test_a_layout_over_hbm_is_one_line_and_json_reports_it():
    pytest.importorskip("libtpu")
    # Two 4096-wide ViT blocks with 64k-wide MLPs: 1.07 B parameters, whose float32
    # weights, gradients and Adam moments need about 18 GiB on each 16 GiB v5e chip.
    result = cli.run(
        "launch.compile",
        "--config=configs/baselines/vit.py:smoke",
        "--config.model.hidden_size=4096",
        "--config.model.num_heads=32",
        "--config.model.mlp_dim=65536",
        "--target=v5e-4",
        "--json",
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["fits"] is False and report["target"] == "v5e-4"
    assert report["mesh"] == {"data": 4, "fsdp": 1, "model": 1}
    assert report["oom"].startswith("needs ") and report["oom"].endswith("GiB available")
    needed = float(report["oom"].split()[1])
    assert needed > report["num_params"] * 12 / 2**30  # at least weights + 2 moments
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: imagenet_vit_smoke does not fit")
    assert "--config.mesh.fsdp=4" in lines[0]


def test_unknown_target_is_one_line():
    result = cli.run("launch.compile", "--config=configs/baselines/vit.py:smoke", "--target=v4-33")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: target 'v4-33': v4 slices count cores, two a chip"
    ]
