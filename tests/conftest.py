"""Test setup: two fake CPU devices (more hang cross-device all-reduce on 2 cores), fast
compilation, and one persistent XLA compilation cache for the session (fresh each run),
shared with the CLI subprocesses, so that the many runs of the same tiny configs compile
once."""

import atexit
import os
import shutil
import tempfile

# The tests' tiny models spend most of their time in XLA's compiler: compile without the
# backend's optimisation passes (about 30% less time; the results are the same programs).
COMPILE_FAST = "--xla_backend_optimization_level=0"
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=2 {COMPILE_FAST}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="jax_test_cache_")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
