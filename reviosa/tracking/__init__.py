"""Experiment tracking with MLflow, client side: run conventions, evaluation logging, the model registry."""
