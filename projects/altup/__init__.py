"""AltUp (Baykal et al., NeurIPS 2023): layers, T5 adapters, the `t5_altup` model and
the `altup` paper table and the `altup_finetune` table."""

from projects.altup import adapters, finetune_table, layers, model, paper_tables  # noqa: F401
