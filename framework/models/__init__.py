"""Base model classes, shared layers and the core architectures (registered by name).

`REGISTERED` says which module registers each model, so that a lookup imports only it
(see `framework.config.registry`).
"""

REGISTERED = {
    "model": {
        "t5": "framework.models.t5.model",
        "transformer_classifier": "framework.models.transformer",
        "vit_classifier": "framework.models.vit",
    },
}
