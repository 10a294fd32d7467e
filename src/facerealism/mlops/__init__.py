"""What does MLflow know about a run or a model: tracking, the registry, the model card, the pyfunc, DVC lineage."""
