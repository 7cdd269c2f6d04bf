"""AdaTape: tape banks, Adaptive Tape Reading, AdaTape-ViT and AdaTape-parity, the
parity, parity ablation and images tables, the tape-selection evaluator and the
`adatape` benchmark mode.

`REGISTERED` names the module that registers each entry, so that a lookup imports only
it (`framework.config.registry`).
"""

REGISTERED = {
    "model": {
        "adatape_parity": "projects.adatape.parity_model",
        "adatape_vit": "projects.adatape.vit_model",
    },
    "table": {
        "images": "projects.adatape.image_table",
        "parity": "projects.adatape.paper_tables",
        "parity_ablation": "projects.adatape.parity_ablation",
    },
    "evaluator": {"tape_selection": "projects.adatape.evaluators"},
    "scale rows": {"adatape": "projects.adatape.scale_rows"},
    "benchmark mode": {"adatape": "projects.adatape.benchmarks"},
}
