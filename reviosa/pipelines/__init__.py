"""Glue for the Kubeflow pipelines: ``steps`` (what each component calls), ``resources`` (GPU pool, retries,
secrets), ``image`` (the project image), ``compile`` / ``local`` / ``submit`` (the ``reviosa pipeline`` verbs)."""
