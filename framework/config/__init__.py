"""Configuring one run: the schema and its defaults, settings fields, the one config
loader, the shared `:arg` grammar, and the name -> code registries."""
