"""The local service stack (SeaweedFS S3 + MLflow server) and the background-process helpers that run it.

Layering: services build on ``reviosa.storage`` (the S3 config clients use); ``reviosa.tracking`` finds the local
MLflow server through ``services.stack``; storage imports neither.
"""
