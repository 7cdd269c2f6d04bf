"""Installs the `framework` core and the paper `projects` (AdaTape, AltUp, baselines)."""

import setuptools

setuptools.setup(
    name="adaptive-compute-repro",
    version="0.1.0",
    description="Scenic-style JAX/Flax framework reproducing AdaTape and AltUp.",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["framework*", "projects*", "launch*", "configs*"]),
    package_data={"framework.experiments": ["gpu_specs/*.txtpb"]},
    install_requires=[
        "jax>=0.10.2,<0.11",
        "jaxlib>=0.10.2,<0.11",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        # Workdir files on local disks and gs:// (served by tf.io.gfile), as Orbax reads them.
        "etils[epath]>=1.15",
        "chex>=0.1.92,<0.2",
        "clu>=0.0.12,<0.1",
        "ml-collections>=1.1.0,<2",
        "absl-py>=2.5.1,<3",
        "tensorflow-cpu>=2.21.0,<2.22; platform_machine=='x86_64'",
        "tensorflow>=2.21.0,<2.22; platform_machine!='x86_64'",
        "tensorboard>=2.21.0,<2.22",
        "tensorflow-datasets>=4.9.10,<4.10",
        "importlib_resources>=7.1",
        "einops>=0.8.2,<0.9",
        "numpy>=2.4,<3",
        "sentencepiece>=0.2.3,<0.3",
        # Hugging Face checkpoints read without torch (`launch.convert hf_t5`).
        "safetensors>=0.8.0,<0.9",
        # Text-task metrics (F1, Matthews correlation); scipy comes with jax.
        "scikit-learn>=1.6",
        # Images: random-access tfds sources (ArrayRecord) read by grain; PIL ops; plots.
        "grain>=0.2.18,<0.3",
        "array-record>=0.8.6,<0.9",
        "pillow>=11",
        "matplotlib>=3.9",
        # R's serialized objects (the fine_food reviews ship in an R package's lazy-load db).
        "rdata>=1.1.0,<2",
    ],
    # Projects register their models, datasets and tables when imported; the core finds
    # them through these entry points (framework/config/registry.py), never by name.
    entry_points={
        "adaptive_compute.projects": [
            "adatape = projects.adatape",
            "altup = projects.altup",
            "baselines = projects.baselines",
        ]
    },
    extras_require={
        # The tests compile for a TPU slice (launch.compile), so they bring libtpu.
        "test": ["pytest>=8", "pytest-xdist>=3", "jax[tpu]>=0.10.2,<0.11"],
        "gpu": ["jax[cuda12]>=0.10.2,<0.11"],
        # Compiling for GPU targets on any host (launch.compile): XLA's CUDA backend and
        # ptxas, without the CUDA runtime libraries.
        "gpu-compile": [
            "jax-cuda12-pjrt>=0.10.2,<0.11; sys_platform == 'linux'",
            "nvidia-cuda-nvcc-cu12>=12.6.85; sys_platform == 'linux'",
        ],
        # libtpu of the installed jax: training on TPU VMs and compiling for TPU anywhere.
        "tpu": ["jax[tpu]>=0.10.2,<0.11"],
    },
)
