"""ReVIOSa as an MLflow ``python_function`` model, loaded by module (no pickle): ``mlflow.pyfunc.load_model`` on a
logged model that :func:`reviosa.tracking.registry.log_logged_model` wrote imports this module and calls
:func:`_load_pyfunc` on its ``weights/`` folder.

    # Name the server first (or set MLFLOW_TRACKING_URI): without one MLflow opens ./mlflow.db in the current folder.
    mlflow.set_tracking_uri("http://127.0.0.1:5000")
    model = mlflow.pyfunc.load_model("models:/reviosa@champion")
    out = model.predict(frames, params={"expression": "the circle chasing the square"})  # frames: uint8 (T, H, W, 3)
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ReviosaPyfunc:
    """A thin wrapper: one video and one expression per call, the masks of both roles back."""

    def __init__(self, weights: str, device: str = "cpu"):
        """Load the ``save_pretrained`` folder ``weights``."""
        from reviosa.model.modeling import ReviosaModel

        self.model = ReviosaModel.from_pretrained(weights, device=device)

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """``{"actor", "target"}`` uint8 (T, H, W) masks (target all zero when the model named none) and ``text``."""
        from reviosa.model.inference import predict_video

        expression = (params or {}).get("expression") or ""
        if not expression.strip():
            raise ValueError("pass the referring expression as params={'expression': '...'}")
        frames = model_input["frames"] if isinstance(model_input, dict) else model_input
        frames = np.asarray(frames, dtype=np.uint8)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got shape {frames.shape}")
        pred = predict_video(self.model, frames, expression)
        target = pred.target if pred.target is not None else np.zeros_like(pred.actor)
        return {"actor": pred.actor.astype(np.uint8), "target": target.astype(np.uint8), "text": pred.text}


def _load_pyfunc(data_path: str, model_config: dict | None = None) -> ReviosaPyfunc:
    """MLflow's loader-module entry point (``model_config`` may set ``device``)."""
    return ReviosaPyfunc(data_path, device=(model_config or {}).get("device", "cpu"))
