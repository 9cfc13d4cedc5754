"""Object storage: one S3 configuration for every client, the local S3 server, and DVC dataset versions."""
