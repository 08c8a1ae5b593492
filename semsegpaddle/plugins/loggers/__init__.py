"""Built-in experiment loggers: VisualDL, TensorBoard and MLflow (each an optional extra)."""
