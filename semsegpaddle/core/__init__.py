"""The framework's core, in layers that import downwards only (docs/architecture.md):

``common`` (errors, atomic writes, runtime, capture) → ``plugin`` (hook specs, manager, registries,
building a component) → ``config`` (YAML loading, schema, validation) → ``model`` and ``data``
(contracts, layers, assembly, weights, losses │ datasets, loading, transforms, image files) →
``inference`` and ``engine`` (segmenter, backends, metrics, export, report │ training loop,
checkpoints, run folder). The core never imports a plugin, ``semsegpaddle.api`` or the CLI.
"""
