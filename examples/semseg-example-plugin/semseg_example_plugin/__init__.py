"""Example components contributed to semsegpaddle through the `semsegpaddle` entry-point group."""
