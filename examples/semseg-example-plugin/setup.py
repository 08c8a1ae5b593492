"""An example third-party plugin for semsegpaddle: one backbone, one decoder, one dataset."""
from setuptools import setup

setup(
    name="semseg-example-plugin",
    version="0.1.0",
    description="Example semsegpaddle plugin: a tiny CNN backbone, an FCN decoder, a rings dataset",
    packages=["semseg_example_plugin"],
    install_requires=["semsegpaddle"],
    # The whole integration: an entry point in the "semsegpaddle" group naming the module with hooks.
    entry_points={"semsegpaddle": ["example = semseg_example_plugin.plugin"]},
)
