"""Ahead-of-time compilation for targets this host does not have: target names, the chip
table, and the trainer's step compiled for small TPU topologies (libtpu, no TPU)."""

import os

import jax
import pytest
from jax.sharding import PartitionSpec as P

from framework.config import loader
from framework.errors import ConfigError
from framework.experiments import aot, targets
from framework.train import chips, cost


@pytest.mark.parametrize(
    "name, topology, devices, megacore, slices",
    [
        ("v3-8", "v3:2x2", 8, False, 1),  # v3 counts cores: 4 chips, a device per core
        ("v4-8", "v4:2x2x1", 4, True, 1),
        ("v4-32", "v4:2x2x4", 16, True, 1),
        ("v5p-128", "v5p:4x4x4", 64, True, 1),
        ("v5e-16", "v5e:4x4", 16, False, 1),  # v5e counts chips
        ("v5e-256", "v5e:16x16", 256, False, 1),
        ("v6e-64", "v6e:8x8", 64, False, 1),
        ("2x v4-32", "v4:2x2x4", 32, True, 2),
        ("h100x8", "1x1x8", 8, False, 1),
        ("2x h100x8", "1x2x8", 16, False, 1),
    ],
)
def test_target_names_map_to_topologies(name, topology, devices, megacore, slices):
    target = targets.parse(name)
    assert (target.topology, target.num_devices) == (topology, devices)
    assert (target.megacore, target.num_slices) == (megacore, slices)


@pytest.mark.parametrize("name", ["v4-31", "v7-8", "h300x8", "tpu", "v4-24"])
def test_unknown_target_is_one_line(name):
    with pytest.raises(ConfigError) as error:
        targets.parse(name)
    assert "\n" not in str(error.value) and name in str(error.value)


def test_libtpu_gives_the_devices_of_a_slice():
    pytest.importorskip("libtpu")
    devices = targets.devices(targets.parse("2x v4-8"))
    # libtpu's start-up settings do not outlive it: a worker list left behind would make
    # commands started from this process think they run on a TPU pod.
    assert "TPU_WORKER_HOSTNAMES" not in os.environ
    assert len(devices) == 8 and {d.device_kind for d in devices} == {"TPU v4"}
    assert sorted({d.slice_index for d in devices}) == [0, 1]
    assert chips.for_device_kind(devices[0].device_kind) == chips.get("v4")


def test_chip_table_lookups_and_mfu():
    assert chips.for_device_kind("TPU v5 lite").name == "v5e"
    assert chips.for_device_kind("TPU v5").name == "v5p"
    assert chips.for_device_kind("TPU v3").peak_flops == 61.5e12  # a core: half a chip
    assert chips.for_device_kind("NVIDIA H100 80GB HBM3").name == "h100"
    assert chips.for_device_kind("NVIDIA H200").hbm_bytes == 141 * 10**9
    assert chips.for_device_kind("NVIDIA A100-SXM4-40GB").hbm_bytes == 40 * 10**9
    assert chips.for_device_kind("cpu") is None
    # 8 devices doing a 1e15-FLOP step 2.2 times a second on v4 (275 TFLOP/s each).
    assert cost.utilisation(1e15, 2.2, 8, chips.get("v4")) == pytest.approx(1e15 * 2.2 / 8 / 275e12)


def test_collectives_and_out_of_memory_parse_xla_text():
    hlo = """
  %all-reduce.1 = f32[32,10]{1,0:T(8,128)} all-reduce(%x), channel_id=1
  %ag-start = (bf16[8,4]{1,0}, bf16[32,4]{1,0}) all-gather-start(%y), dimensions={0}
  %ag-done = bf16[32,4]{1,0} all-gather-done(%ag-start)
  %all-reduce.2 = (f32[32]{0}, f32[16]{0}) all-reduce(%a, %b), channel_id=2
  %fusion = f32[8]{0} fusion(%all-reduce.1)
"""
    assert aot.collectives(hlo) == {
        "all-reduce": {"count": 2, "bytes": 32 * 10 * 4 + 48 * 4},
        "all-gather": {"count": 1, "bytes": 32 * 4 * 2},
    }
    error = RuntimeError(
        "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory "
        "space hbm. Used 48.06G of 15.75G hbm. Exceeded hbm capacity by 32.31G.\n\nTotal "
        "hbm usage >= 48.31G: ... the total memory required (48.06G) exceeds available "
        "HBM (15.75G)\n more lines"
    )
    assert aot.out_of_memory(error) == "needs 48.06 GiB per device, 15.75 GiB available"
    assert aot.out_of_memory(ValueError("shapes do not match")) is None


def _vit(width: int = 128):
    config = loader.load_config("configs/baselines/vit.py:smoke")
    config.model.update(hidden_size=width, mlp_dim=4 * width, num_heads=4, num_layers=2)
    return config


def test_vit_with_fsdp_and_micro_batches_compiles_for_a_tpu_slice_and_fits():
    pytest.importorskip("libtpu")
    config = _vit()
    config.mesh.update(data=2, fsdp=2)
    config.grad_accum_steps = 2  # a loop over micro-batches, whose body XLA counts once
    report = aot.compile_for_target(config, "v4-8")
    assert report.fits and report.oom is None and report.mesh == {"data": 2, "fsdp": 2, "model": 1}
    assert 0 < report.memory["peak"] < 0.01 * report.hbm_bytes
    # FSDP: each device holds half of the parameters (a few tiny leaves stay whole).
    whole = report.num_params * 4
    assert 0.5 * whole <= report.memory["params"] < 0.6 * whole
    assert report.xla_flops_per_step > 0
    assert report.flops_ratio == pytest.approx(1.0, abs=0.1)  # both micro-batches counted
    assert "all-gather" in report.collectives  # FSDP gathers the kernels
    assert report.roofline_seconds > 0 and 0 < report.mfu_at_bound <= 1


def test_t5_altup_on_a_2d_mesh_splits_kernels_as_the_rules_say():
    pytest.importorskip("libtpu")
    config = loader.load_config("configs/altup/t5.py:tiny,altup,data=random")
    config.mesh.update(data=1, fsdp=4, model=2)
    config.dataset.vocab_size = 512
    spec = targets.parse("v5e-8")
    from framework.train import experiment, sharding

    mesh = sharding.make_mesh(config.mesh, list(targets.devices(spec)))
    exp = experiment.build_experiment(config, mesh)
    compiled = exp.jit_train_step().lower(exp.abstract_state, exp.abstract_batch).compile()
    params = exp.abstract_state.params["decoder"]["layers_0"]["layer"]
    # mlp: (embed, mlp) -> (fsdp, model); attention query: (embed, heads, kv).
    assert params["mlp"]["wi_0"]["kernel"].sharding.spec == P("fsdp", "model")
    assert params["self_attention"]["query"]["kernel"].sharding.spec == P("fsdp", "model", None)
    compiled_params = compiled.input_shardings[0][0].params["decoder"]["layers_0"]["layer"]
    assert compiled_params["mlp"]["wi_0"]["kernel"].spec == P("fsdp", "model")
    embedding = exp.abstract_state.params["token_embedding"]["embedding"]
    assert embedding.sharding.spec == P("model", "fsdp")  # (vocab, embed)
    # Kernels split 8 ways; norms and AltUp's scalars stay whole, and are tiny.
    whole = 4 * sum(leaf.size for leaf in jax.tree.leaves(exp.abstract_state.params))
    assert whole / 8 <= exp.memory()["param_bytes_per_device"] < 1.1 * whole / 8
    assert "all-gather" in aot.collectives(compiled.as_text())
