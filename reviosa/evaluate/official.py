"""The official prediction file ``results.json``: what official InterRVOS inference writes and its scripts score.

``{video: {exp_id: {"index", "video_id", "exp_id", "text_prediction", "frames", "exp",
"prediction_masks_act": [RLE per frame], "prediction_masks_tar": [RLE per frame]}}}``, one COCO RLE
(``{"size": [H, W], "counts": str}``) per frame of the video. Official inference writes one
``results_pid_<k>.json`` per process and merges them; a folder of those is merged here the same way (an
expression in two files is an error). A missing target prediction is written as an all-zero mask per frame.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from reviosa.data.atomic import atomic_write_text
from reviosa.data.rle import check_rle, decode_rle, encode_mask
from reviosa.evaluate.predictions import PngPredictions, PredictionError

RESULTS_FILE = "results.json"
ROLE_KEYS = {"actor": "prediction_masks_act", "target": "prediction_masks_tar"}
_PID_FILE = re.compile(r"results_pid_(\d+)\.json")


def result_files(path: str | os.PathLike) -> list[Path]:
    """The official prediction files at ``path``: itself, or a folder's per-rank files (else its results.json)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    pids = sorted((p for p in path.iterdir() if _PID_FILE.fullmatch(p.name) and p.is_file()),
                  key=lambda p: int(_PID_FILE.fullmatch(p.name).group(1)))
    if pids:
        return pids
    return [path / RESULTS_FILE] if (path / RESULTS_FILE).is_file() else []


class OfficialPredictions:
    """Prediction tracks from a results.json (or merged per-rank files), read like the PNG folder."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.files = result_files(self.path)
        if not self.files:
            raise PredictionError(self.path, f"no {RESULTS_FILE} or results_pid_<k>.json files here")
        self.results: dict[str, dict[str, dict[str, Any]]] = {}
        self._origin: dict[tuple[str, str], Path] = {}
        for f in self.files:
            self._merge(f)

    def _merge(self, file: Path) -> None:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise PredictionError(file, f"not a readable JSON file ({err})") from None
        if not isinstance(data, dict):
            raise PredictionError(file, "top level must be an object {video: {exp_id: entry}}")
        for vid, exps in data.items():
            if not isinstance(exps, dict):
                raise PredictionError(file, f"video {vid!r}: expected an object {{exp_id: entry}}")
            slot = self.results.setdefault(vid, {})
            for exp_id, entry in exps.items():
                if exp_id in slot:
                    raise PredictionError(file, f"video {vid!r} expression {exp_id!r} is also in "
                                          f"{self._origin[(vid, exp_id)]}")
                if not isinstance(entry, dict):
                    raise PredictionError(file, f"video {vid!r} expression {exp_id!r}: entry must be an object")
                slot[exp_id] = entry
                self._origin[(vid, exp_id)] = file

    @property
    def description(self) -> str:
        """Which files were read (for reports)."""
        names = ", ".join(f.name for f in self.files)
        return f"{self.path} ({names})" if self.path.is_dir() else str(self.path)

    def has_video(self, video: str) -> bool:
        """Whether the file has any prediction for ``video``."""
        return video in self.results

    def read_track(self, video: str, exp_id: str, role: str, frames: list[str],
                   size: tuple[int, int]) -> tuple[np.ndarray | None, list[str]]:
        """One role's (T, H, W) bool masks and the frames with a null entry; ``(None, frames)`` when absent."""
        entry = self.results.get(video, {}).get(exp_id)
        rles = None if entry is None else entry.get(ROLE_KEYS[role])
        if rles is None:
            return None, list(frames)
        file, where = self._origin[(video, exp_id)], f"{video}/{exp_id}/{ROLE_KEYS[role]}"
        listed = entry.get("frames")
        if listed is not None and (not isinstance(listed, list) or listed != list(frames)):
            raise PredictionError(file, f"{video}/{exp_id}: 'frames' differ from the split's {len(frames)} frames; "
                                  "these predictions are for another version of the video")
        if not isinstance(rles, list) or len(rles) != len(frames):
            got = f"{len(rles)} entries" if isinstance(rles, list) else type(rles).__name__
            raise PredictionError(file, f"{where}: expected one RLE per frame ({len(frames)}), got {got}")
        masks = np.zeros((len(frames), *size), dtype=bool)
        missing = []
        for t, rle in enumerate(rles):
            if rle is None:
                missing.append(frames[t])
                continue
            try:
                # Before decoding: a short run list would decode to uninitialised memory, a huge size exhaust it.
                h, w = check_rle(rle)
            except ValueError as err:
                raise PredictionError(file, f"{where}[{t}]: {err}") from None
            if [h, w] != list(size):
                raise PredictionError(file, f"{where}[{t}]: mask is {h}x{w} (HxW) but the video is "
                                      f"{size[0]}x{size[1]}; predictions must be at the original resolution")
            try:
                masks[t] = decode_rle(rle)
            except Exception as err:  # pycocotools raises bare ValueError/TypeError on corrupt counts
                raise PredictionError(file, f"{where}[{t}]: RLE does not decode ({err})") from None
        return masks, missing


def is_official(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds official predictions (a JSON file, or a folder with results*.json files)."""
    return bool(result_files(path))


def open_predictions(path: str | os.PathLike) -> PngPredictions | OfficialPredictions:
    """The prediction source at ``path``: an official results.json (or folder of them) or a PNG folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"predictions {path} do not exist")
    if is_official(path):
        return OfficialPredictions(path)
    if not path.is_dir():
        raise PredictionError(path, "expected a prediction folder or an official results.json")
    return PngPredictions(path)


def results_entry(index: int, video: str, exp_id: str, text: str, frames: list[str], actor: np.ndarray,
                  target: np.ndarray | None, text_prediction: str = "") -> dict[str, Any]:
    """One expression's entry as official inference writes it (a missing target is all-zero masks)."""
    if actor.ndim != 3 or actor.shape[0] != len(frames):
        raise ValueError(f"expected ({len(frames)}, H, W) actor masks for {video}/{exp_id}, got {actor.shape}")
    tar = np.zeros(actor.shape, dtype=bool) if target is None else target
    if tar.shape != actor.shape:
        raise ValueError(f"target masks {tar.shape} differ from actor masks {actor.shape} for {video}/{exp_id}")
    return {"index": index, "video_id": video, "exp_id": exp_id, "text_prediction": text_prediction,
            "frames": list(frames), "exp": text,
            "prediction_masks_act": [encode_mask(m) for m in actor],
            "prediction_masks_tar": [encode_mask(m) for m in tar]}


def results_path(out: str | os.PathLike) -> Path:
    """Where official predictions go for ``--out``: the path itself if it names a .json file, else out/results.json."""
    out = Path(out)
    return out if out.suffix == ".json" else out / RESULTS_FILE


def write_results(out: str | os.PathLike, entries: list[dict[str, Any]], *, merge: bool = False) -> Path:
    """Write entries as ``{video: {exp_id: entry}}`` atomically; ``merge`` keeps other entries of an existing file."""
    path = results_path(out)
    results: dict[str, dict[str, Any]] = {}
    if merge and path.is_file():
        results = OfficialPredictions(path).results
    for e in entries:
        results.setdefault(e["video_id"], {})[e["exp_id"]] = e
    atomic_write_text(path, json.dumps(results))
    return path
