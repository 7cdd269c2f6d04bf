"""Compile a config's train step for a TPU slice or GPU hosts from any machine: will it
fit, and how fast could it go?

  python -m launch.compile --config=configs/altup/t5.py:large,altup,bf16,data=random \
      --target=v4-32 [--config.mesh.fsdp=16 --config.model.remat=block] [--json]

Targets as Cloud TPU and GPU users name them: `v3-8`, `v4-8`, `v4-32`, `v5e-16`,
`v5e-256`, `v5p-128`, `v6e-64`, `2x v4-32` (two slices), `a100x8`, `h100x8`, `h200x8`,
`2x h100x8` (two hosts). TPUs need the `tpu` extra (libtpu), GPUs the `gpu-compile` extra
(XLA's CUDA compiler); neither needs the hardware. Nothing is trained and no data is
read beyond one example batch for its shapes (use a config's `data=random` preset when
its data is not on this machine).

Prints the mesh; per-device parameters, optimizer state, batch and XLA temporaries;
the peak against the chip's HBM ("fits", or XLA's out-of-memory as one line); FLOPs per
step from XLA beside the model's analytical count; bytes accessed; the collectives;
and a roofline bound on the step time with the MFU at that bound
(`framework/experiments/aot.py`). `--json` prints the same as one JSON object. Exit
status 0 when it fits, 1 when it does not, 2 for a bad config or target.
"""

from __future__ import annotations

import os

# Compiling only: the host's own accelerator (if any) is not used, and a training run
# on it keeps it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import flags  # noqa: E402

from framework import app  # noqa: E402
from framework.errors import ConfigError, RunError  # noqa: E402
from framework.experiments import aot  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("target", None, "What to compile for: v4-32, v5e-256, h100x8, 2x v4-32, ...")
flags.DEFINE_bool("json", False, "Print the report as one JSON object.")


def advice(report: aot.CompileReport) -> str:
    """The first layouts to try when one does not fit (`aot.layouts_to_try`)."""
    steps = aot.layouts_to_try(report.to_json())[:3]
    return "try " + ", then ".join(" ".join(overrides) for _, overrides in steps)


def main() -> None:
    config = app.config()
    if config is None:
        raise ConfigError("--config is required, e.g. --config=configs/baselines/vit.py:B/16")
    if not FLAGS.target:
        raise ConfigError("--target is required, e.g. --target=v4-32 or --target=h100x8")
    report = aot.compile_for_target(config, FLAGS.target)
    if FLAGS.json:
        print(aot.report_json(report), flush=True)
    else:
        print("\n".join(report.lines()), flush=True)
    if not report.fits:
        reason = report.oom or (
            f"peak {report.memory['peak'] / aot.GIB:.2f} GiB per device, "
            f"{report.usable_hbm_bytes / aot.GIB:.2f} GiB usable"
        )
        raise RunError(
            f"{report.experiment} does not fit on {report.target}: {reason}; {advice(report)}"
        )


if __name__ == "__main__":
    app.run(main)
