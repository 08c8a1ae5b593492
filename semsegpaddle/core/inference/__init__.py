"""Inference: modes (whole, slide, multi-scale + flip) over backends (dynamic model, Paddle
Inference), evaluation, scoring of saved predictions, metrics, prediction of image files, export,
the run report."""
