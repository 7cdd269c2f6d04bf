"""The registries' manifests name every registered entry, and a lookup imports only
the module of the name asked for."""

from __future__ import annotations

import subprocess
import sys

from framework.config import registry

REGISTRIES = (
    registry.MODELS,
    registry.DATASETS,
    registry.TRAINERS,
    registry.TABLES,
    registry.EVALUATORS,
    registry.BENCHMARKS,
)


def test_every_registered_entry_is_in_a_manifest_under_its_module():
    registry.import_all()
    manifest = registry.manifest()
    for table in REGISTRIES:
        declared = manifest.get(table.kind, {})
        for name in table.names():
            entry = table.get(name)
            module = getattr(entry, "__module__", None) or type(entry).__module__
            if not module.startswith(("framework.", "projects.")):
                continue  # a command's own entries (launch.benchmark's modes), or a test's
            assert name in declared, f"{table.kind} {name!r} is missing from the manifests"
            assert module == declared[name], (table.kind, name, module, declared[name])
        assert set(declared) <= set(table.names()), f"manifest names unknown {table.kind}s"


def test_a_lookup_imports_only_the_named_entry():
    code = (
        "import sys\n"
        "from framework.config import registry\n"
        "registry.MODELS.get('transformer_classifier')\n"
        "registry.DATASETS.get('parity')\n"
        "registry.TRAINERS.get('default')\n"
        "registry.EVALUATORS.get('metrics')\n"
        "heavy = [m for m in ('tensorflow', 'tensorflow_datasets', 'grain', 'matplotlib',\n"
        "         'projects.altup.model', 'framework.data.images',\n"
        "         'framework.train.evaluators.decoding', 'framework.models.t5')\n"
        "         if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
