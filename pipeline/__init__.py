"""CPR-CLIP pipeline: shared contracts (config, taxonomy, manifest, feature store) and the CLI."""
