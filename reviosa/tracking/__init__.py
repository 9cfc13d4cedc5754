"""Experiment tracking with MLflow: the server, run conventions, evaluation logging, the model registry."""
