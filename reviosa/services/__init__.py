"""The local service stack (SeaweedFS S3 + MLflow server) and the background-process helpers that run it, plus the
cluster's entry points that read their secrets from mounted files: ``mlflow_server`` (MLflow behind basic auth)
and ``minio_setup`` (one MinIO user and bucket policy per workload).

Layering: services build on ``reviosa.storage`` (the S3 config clients use); ``reviosa.tracking`` finds the local
MLflow server through ``services.stack``; storage imports neither.
"""
