"""The one project image every KFP step runs in (built from ``infra/Dockerfile``)."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version


def _version() -> str:
    try:
        return version("reviosa")
    except PackageNotFoundError:
        return "0.1.0"


#: ``REVIOSA_IMAGE`` at compile time points the specs at another registry (e.g. the one Terraform created).
IMAGE = os.environ.get("REVIOSA_IMAGE", f"ghcr.io/reviosa/reviosa:{_version()}")
