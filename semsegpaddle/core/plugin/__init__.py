"""The plugin system: hook specs, the plugin manager and its failure reports, per-kind registries."""
