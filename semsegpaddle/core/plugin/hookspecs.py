"""Every hook a semsegpaddle plugin can implement.

A plugin is a module (or object) with functions decorated by ``@hookimpl`` whose names match the
specs below. Plugins are found through the setuptools entry-point group ``semsegpaddle``; the
package's own backbones, decoders and datasets are registered the same way.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar, cast

import pluggy

PROJECT_NAME = "semsegpaddle"

_F = TypeVar("_F", bound=Callable[..., Any])
_hookspec = pluggy.HookspecMarker(PROJECT_NAME)
_hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


def hookspec(function: _F) -> _F:
    """Mark ``function`` as a hook specification (typed so the signature survives)."""
    return cast(_F, _hookspec(function))


def hookimpl(function: _F | None = None, **kwargs: Any) -> Any:
    """Mark ``function`` as a hook implementation; accepts pluggy's keyword options."""
    if function is None:
        return _hookimpl(**kwargs)
    return cast(_F, _hookimpl(function, **kwargs))


# -------------------------------------------------------------------------------------------------
# components
# -------------------------------------------------------------------------------------------------


@hookspec
def semseg_register_backbones(register: Callable[..., None]) -> None:
    """Contribute backbones.

    Called once when plugins are loaded. Call ``register(name, factory, options=..., ...)`` once per
    backbone (see :meth:`semsegpaddle.core.plugin.registry.Registry.add` for the arguments). ``factory``
    is called with the options from the config's ``model.backbone`` section (minus ``name`` and
    ``pretrained``) and must return a :class:`semsegpaddle.core.model.interfaces.Backbone`, whose
    ``feature_info`` declares each returned level's channels and stride. A backbone may pass
    ``convert_weights=fn``: ``fn(state, options)`` turns a timm/torchvision state dict (name ->
    numpy array) into this backbone's parameter names, so ``semseg convert-weights`` can import it.
    """


@hookspec
def semseg_register_decoders(register: Callable[..., None]) -> None:
    """Contribute decoders (segmentation heads).

    Called once when plugins are loaded. Call ``register(name, factory, options=..., ...)`` once per
    decoder. ``factory(feature_info, num_classes, **options)`` receives the backbone's
    :class:`~semsegpaddle.core.model.interfaces.FeatureInfo` (never the backbone itself) and must return
    a :class:`~semsegpaddle.core.model.interfaces.Decoder`.
    """


@hookspec
def semseg_register_datasets(register: Callable[..., None]) -> None:
    """Contribute datasets.

    Called once when plugins are loaded. Call ``register(name, factory, options=..., ...)`` once per
    dataset. ``factory(split, **options)`` gets ``split`` ("train", "val", ...) and must return a
    :class:`~semsegpaddle.core.data.base.SegDataset`: pairs of uint8 H×W×3 images and integer H×W
    labels, plus ``num_classes``, ``ignore_index``, ``class_names`` and ``palette``.
    """


@hookspec
def semseg_register_losses(register: Callable[..., None]) -> None:
    """Contribute losses.

    Called once when plugins are loaded. Call ``register(name, factory, options=..., ...)`` once per
    loss. ``factory(ignore_index, **options)`` gets the dataset's ignore index and the options from
    the config's loss entry, and must return a callable ``loss(output, label) -> scalar tensor``:
    ``output`` is one of the model's training outputs (N×C×H×W logits at the label's size for
    pixel losses) and ``label`` the N×H×W int64 labels, ignore pixels included.
    """


@hookspec
def semseg_register_loggers(register: Callable[..., None]) -> None:
    """Contribute experiment loggers (trackers such as VisualDL, TensorBoard, MLflow).

    Called once when plugins are loaded. Call ``register(name, factory, options=..., ...)`` once per
    logger. ``factory(**options)`` gets the options of the logger's entry in ``runtime.loggers`` and
    must return an object with the methods of :class:`semsegpaddle.core.engine.loggers.Logger`
    (``start``, ``scalars``, ``artifact``, ``flush``, ``finish``). It runs in the main process before
    the run folder is touched: raise :class:`~semsegpaddle.core.common.errors.SemsegError` with a
    one-line message (e.g. the extra to install) when the logger cannot work, and leave imports of
    heavy packages and any network or file access to ``start``. Only the main process logs; an
    exception from a logger's method turns that logger off with one warning, training goes on.
    """


# -------------------------------------------------------------------------------------------------
# configs
# -------------------------------------------------------------------------------------------------


@hookspec
def semseg_register_configs(register: Callable[..., None]) -> None:
    """Ship ready-made YAML configs that users address by name.

    Called once when plugins are loaded, after the component hooks. Call ``register(name, path)``
    once per config: ``path`` is the YAML file (absolute, or relative to the directory of the
    plugin's module), ``name`` what users type: ``semseg train NAME``, ``_base_: NAME``.
    ``semseg config --list`` shows each name with the plugin that gave it. A name that is already
    taken (by semsegpaddle's own configs or an earlier plugin) stays with its first owner.
    """


# -------------------------------------------------------------------------------------------------
# command line
# -------------------------------------------------------------------------------------------------


@hookspec
def semseg_register_commands(cli: Any) -> None:
    """Add subcommands to the ``semseg`` command line.

    Called at the end of CLI set-up with the root :class:`click.Group`; use ``@cli.command()`` to
    add commands. Keep their logic out of the command function where it can be reused.
    """
