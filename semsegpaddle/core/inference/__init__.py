"""Inference: evaluation over a dataset, metrics, prediction of image files, export."""
