"""AltUp (Baykal et al., NeurIPS 2023): layers, T5 adapters, the `t5_altup` model, the
`altup` paper table, the `altup_finetune` table and the `altup` / `decode` benchmark modes.

`REGISTERED` names the module that registers each entry, so that a lookup imports only
it (`framework.config.registry`).
"""

REGISTERED = {
    "model": {"t5_altup": "projects.altup.model"},
    "table": {
        "altup": "projects.altup.paper_tables",
        "altup_finetune": "projects.altup.finetune_table",
    },
    "scale rows": {"altup": "projects.altup.scale_rows"},
    "benchmark mode": {
        "altup": "projects.altup.benchmarks",
        "decode": "projects.altup.benchmarks",
    },
}
