"""The hooks: register a backbone, a decoder, a dataset, and a `semseg hello` command.

This module stays light (no paddle import): the factories import the models from ``models`` when a
component is built, as docs/plugins.md asks of every plugin.
"""
from __future__ import annotations

from semsegpaddle import hookimpl


def tiny_cnn(width: int = 16):
    """Four strided 3×3 conv-BN-ReLU stages; levels at strides 4, 8, 16, 32."""
    from semseg_example_plugin.models import TinyCNN

    return TinyCNN(width)


def simple_fcn(feature_info, num_classes: int, *, channels: int = 32):
    """Sum of 1×1-projected levels, resized to the finest one, then a 1×1 classifier."""
    from semseg_example_plugin.models import SimpleFCN

    return SimpleFCN(feature_info, num_classes, channels=channels)


def rings(split: str, *, size: int = 48, count: int = 32):
    """A filled disc inside a ring on a noisy background, at random places."""
    from semseg_example_plugin.models import Rings

    return Rings(split, size=size, count=count)


@hookimpl
def semseg_register_backbones(register):
    """Contribute `tiny_cnn`."""
    register("tiny_cnn", tiny_cnn, options={"width": "channels of the first stage (doubling per stage)"})


@hookimpl
def semseg_register_decoders(register):
    """Contribute `simple_fcn`."""
    register("simple_fcn", simple_fcn, options={"channels": "channels of the fused features"})


@hookimpl
def semseg_register_datasets(register):
    """Contribute `rings`."""
    register("rings", rings, options={"size": "image side in pixels", "count": "samples per split"})


@hookimpl
def semseg_register_commands(cli):
    """Contribute `semseg hello`, showing that plugins can extend the command line."""
    import click

    @cli.command()
    def hello():
        """Say hello from the example plugin."""
        click.echo("hello from semseg-example-plugin")
