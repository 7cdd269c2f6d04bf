"""Devices of NVIDIA GPU targets for compiling without a GPU: the one-line error when the
CUDA packages are missing, the target specs against the chip table, and (with the
`gpu-compile` extra) a compile for two 8-GPU H100 hosts."""

import re

import numpy as np
import pytest

from framework.errors import ConfigError
from framework.experiments import gpu_devices as gd
from framework.train import chips


@pytest.mark.parametrize("missing", ["plugin", "ptxas"])
def test_missing_package_is_one_line_naming_the_install(monkeypatch, missing):
    if missing == "plugin":
        monkeypatch.setattr(gd, "_find_module", lambda name: None)
    else:
        monkeypatch.setattr(gd, "_cuda_dir", lambda: None)
    with pytest.raises(ConfigError) as error:
        gd.gpu_devices("h100", 1, 8)
    message = str(error.value)
    assert "\n" not in message
    assert "pip install -e '.[gpu-compile]'" in message


def test_unknown_chip_and_bad_counts_are_config_errors():
    with pytest.raises(ConfigError, match="no GPU target spec for chip 'v4'"):
        gd.gpu_devices("v4")
    with pytest.raises(ConfigError, match="hosts and gpus_per_host >= 1"):
        gd.gpu_devices("h100", hosts=0)


def _matrix_rate(spec: str, type_number: int) -> float:
    """FLOP/s of the matrix units for one PrimitiveType, as XLA computes it from a spec:
    SMs x units per SM x FMAs per clock x 2 x clock."""
    block = spec[spec.index("matrix_unit_description") :]
    rate = re.search(
        rf"key: {type_number} value {{ clock_rate_ghz: ([\d.]+) units_per_core: (\d+) "
        rf"ops_per_clock: (\d+) }}",
        block,
    )
    cores = int(re.search(r"core_count: (\d+)", spec).group(1))
    ghz, units, ops = float(rate.group(1)), int(rate.group(2)), int(rate.group(3))
    return cores * units * ops * 2 * ghz * 1e9


@pytest.mark.parametrize("chip_name", ["a100", "h100", "h200"])
def test_spec_agrees_with_the_chip_table(chip_name):
    chip, spec = chips.get(chip_name), gd.spec_text(chip_name)
    assert spec.count("{") == spec.count("}")
    memory = int(gd.spec_field(chip_name, "device_memory_size"))
    assert memory == pytest.approx(chip.hbm_bytes, rel=1e-3)
    assert int(gd.spec_field(chip_name, "memory_bandwidth")) == pytest.approx(
        chip.hbm_bandwidth, rel=1e-3
    )
    # XLA's bf16 (PrimitiveType 16) matrix-unit rate is the chip's dense bf16 peak.
    assert _matrix_rate(spec, 16) == pytest.approx(chip.peak_flops, rel=0.01)
    # The device kind the compiled-for devices report finds the same chip.
    kind = gd.spec_field(chip_name, "device_description_str")
    assert chips.for_device_kind(kind) == chip


def test_h200_differs_from_h100_in_memory_only():
    h100, h200 = gd.spec_text("h100"), gd.spec_text("h200")
    for field in ("core_count", "clock_rate_ghz", "l2_cache_size", "shared_memory_per_core"):
        assert gd.spec_field("h100", field) == gd.spec_field("h200", field)
    assert _matrix_rate(h100, 16) == _matrix_rate(h200, 16)
    assert int(gd.spec_field("h200", "device_memory_size")) > int(
        gd.spec_field("h100", "device_memory_size")
    )


def test_compiles_a_sharded_step_for_two_h100_hosts():
    pytest.importorskip("jax_plugins.xla_cuda12")  # the gpu-compile extra
    import jax
    import jax.numpy as jnp
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    devices = gd.gpu_devices("h100", hosts=2, gpus_per_host=8)
    assert len(devices) == 16
    assert [d.process_index for d in devices] == [i // 8 for i in range(16)]
    assert {chips.for_device_kind(d.device_kind).name for d in devices} == {"h100"}
    for chip_name in ("a100", "h200"):  # the other specs load too
        assert chips.for_device_kind(gd.gpu_devices(chip_name, 1, 2)[0].device_kind).name == (
            chip_name
        )

    mesh = Mesh(np.array(devices).reshape(8, 2), ("data", "model"))
    m, k, n = 1024, 512, 2048
    x = jax.ShapeDtypeStruct((m, k), jnp.bfloat16, sharding=NamedSharding(mesh, P("data")))
    w = jax.ShapeDtypeStruct((k, n), jnp.bfloat16, sharding=NamedSharding(mesh, P(None, "model")))
    lowered = jax.jit(lambda x, w: jnp.tanh(x @ w).sum()).lower(x, w)
    compiled = lowered.compile(compiler_options=gd.COMPILER_OPTIONS)
    memory = compiled.memory_analysis()
    # Per device: x's rows split 8 ways, w's columns 2 ways, in bfloat16.
    assert memory.argument_size_in_bytes == (m // 8 * k + k * n // 2) * 2
    assert memory.peak_memory_in_bytes >= memory.argument_size_in_bytes
    assert "all-reduce" in compiled.as_text()
    # XLA gives no cost analysis for these devices; the CPU backend counts the whole program.
    assert gd.cpu_cost_analysis(lowered)["flops"] >= 2 * m * k * n


def test_compiles_the_trainers_step_for_an_h100_host():
    pytest.importorskip("jax_plugins.xla_cuda12")  # the gpu-compile extra
    from jax.sharding import Mesh

    from framework.config import loader
    from framework.train import experiment, sharding

    config = loader.load_config("configs/baselines/vit.py:smoke")
    config.batch_size, config.eval_batch_size = 16, 16
    mesh = Mesh(np.array(gd.gpu_devices("h100", 1, 8)).reshape(8, 1, 1), sharding.MESH_AXES)
    exp = experiment.build_experiment(config, mesh)
    lowered = exp.jit_train_step().lower(exp.abstract_state, exp.abstract_batch)
    # Without COMPILER_OPTIONS XLA's untuned Triton GEMM tiling fails on the ViT's
    # 130-token matmuls.
    compiled = lowered.compile(compiler_options=gd.COMPILER_OPTIONS)
    memory = compiled.memory_analysis()
    assert 0 < memory.argument_size_in_bytes < memory.peak_memory_in_bytes < 2**30
