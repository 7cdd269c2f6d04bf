"""Baselines that are not core architectures: Universal Transformer / UViT / U2T with ACT,
and A-ViT.

`REGISTERED` names the module that registers each entry, so that a lookup imports only
it (`framework.config.registry`).
"""

REGISTERED = {
    "model": {
        "avit": "projects.baselines.avit",
        "ut_parity": "projects.baselines.models",
        "uvit": "projects.baselines.models",
    },
}
