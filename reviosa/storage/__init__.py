"""Object storage: one S3 configuration for every client, its access checks, reads of ``s3://`` objects (``fetch``),
and DVC dataset versions."""
