"""``reviosa predict``, ``reviosa select-heads``, ``reviosa convert-internvl`` and ``reviosa convert-official``: run
a ReVIOSa model on a video, pick AML layer/heads, convert an original OpenGVLab InternVL-2.5 checkpoint to the
transformers layout, import a checkpoint of the official ReVIOSa code."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Attach the model commands."""
    app.command("predict")(predict)
    app.command("select-heads")(select_heads)
    app.command("convert-internvl")(convert_internvl)
    app.command("convert-official")(convert_official)


def _read_video(path: Path):
    """(frame names, uint8 (T, H, W, 3)) from a video file or a folder of images."""
    import numpy as np

    from reviosa.data.video import decode_video, read_image

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        if not files:
            raise typer.BadParameter(f"{path}: no .jpg/.png frames in this folder", param_hint="--video")
        return [p.stem for p in files], np.stack([read_image(p) for p in files])
    if not path.is_file():
        raise typer.BadParameter(f"{path}: no such video file or frame folder", param_hint="--video")
    frames = list(decode_video(path))
    if not frames:
        raise typer.BadParameter(f"{path}: the video has no frames", param_hint="--video")
    return [f"{i:05d}" for i in range(len(frames))], np.stack(frames)


def predict(model: str = typer.Option(..., "--model", help="Checkpoint folder or s3:// URI (save_pretrained)"),
            video: Path = typer.Option(..., "--video", help="Video file or folder of frames"),
            expression: str = typer.Option(..., "--expression", help="Referring expression"),
            out: Path = typer.Option(Path("predictions"), "--out", help="Prediction folder"),
            exp_id: str = typer.Option("0", "--exp-id", help="Expression id in the prediction layout"),
            answer: str = typer.Option(None, "--answer", help="Force the reply text instead of generating it"),
            overlay: str = typer.Option("gif", "--overlay", help="gif | mp4 | none"),
            fmt: str = typer.Option("png", "--format", help="png (the prediction folder) | official (add the "
                                    "expression to <out>/results.json, or OUT itself if it ends in .json)"),
            set_: list[str] = typer.Option([], "--set", help="Override a field of the checkpoint's model config, "
                                           "e.g. --set inference.key_frames=8 (repeatable)"),
            device: str = typer.Option("cpu", "--device")) -> None:
    """Segment the actor (and target) of an expression: masks in the prediction layout plus an overlay."""
    from reviosa.data.names import UnsafeName, check_component, inside
    from reviosa.evaluate.official import results_entry, results_path, write_results
    from reviosa.evaluate.predictions import write_track
    from reviosa.model.errors import CheckpointError
    from reviosa.model.inference import predict_video
    from reviosa.model.modeling import ReviosaModel
    from reviosa.visualize.overlay import overlay_frames, write_overlay

    if overlay not in ("gif", "mp4", "none"):
        raise typer.BadParameter("must be gif, mp4 or none", param_hint="--overlay")
    if fmt not in ("png", "official"):
        raise typer.BadParameter("must be png or official", param_hint="--format")
    name = video.stem if video.is_file() else video.name
    try:
        # Both become folders under --out, before the model is loaded: a bad one must not cost a model load.
        check_component(name, "video name")
        check_component(exp_id, "expression id")
    except UnsafeName as err:
        raise typer.BadParameter(str(err), param_hint="--video / --exp-id") from None
    names, frames = _read_video(video)
    try:
        net = ReviosaModel.from_pretrained(model, device=device, overrides=set_)
    except CheckpointError as err:
        raise typer.BadParameter(str(err), param_hint="--model / --set") from None
    pred = predict_video(net, frames, expression, answer=answer)
    if fmt == "official":
        written = write_results(out, [results_entry(0, name, exp_id, expression, names, pred.actor, pred.target,
                                                    pred.text)], merge=True)
        folder = inside(written.parent, name, exp_id, what="overlay folder")
    else:
        write_track(out, name, exp_id, "actor", names, pred.actor)
        if pred.target is not None:
            write_track(out, name, exp_id, "target", names, pred.target)
        folder = inside(out, name, exp_id, what="overlay folder")
    typer.echo(f"answer: {pred.text!r}")
    typer.echo(f"actor: {int(pred.actor.any(axis=(1, 2)).sum())}/{len(names)} frames with a mask; target: "
               + ("none" if pred.target is None else f"{int(pred.target.any(axis=(1, 2)).sum())}/{len(names)}"))
    if overlay != "none":
        pictures = overlay_frames(frames, pred.actor, pred.target, expression=expression, answer=pred.text,
                                  answer_label="answer (forced)" if answer is not None else "answer",
                                  frame_names=names)
        path = write_overlay(folder / f"overlay.{overlay}", pictures)
        typer.echo(f"overlay: {path}")
    typer.echo(f"masks: {results_path(out) if fmt == 'official' else folder}")


def select_heads(data: Path = typer.Option(..., "--data", help="Split folder (InterRVOS/MeViS layout)"),
                 model: str = typer.Option(None, "--model", help="Checkpoint folder or s3:// URI"),
                 config: str = typer.Option("tiny", "--config", help="Model config when --model is not given"),
                 set_: list[str] = typer.Option([], "--set", help="Override a model config field (repeatable)"),
                 samples: int = typer.Option(16, "--samples", min=1, help="Expressions to measure"),
                 top_k: int = typer.Option(4, "--top-k", min=1),
                 out: Path = typer.Option(Path("head_selection"), "--out", help="Folder for the two plots"),
                 seed: int = typer.Option(0, "--seed")) -> None:
    """Rank layers by head-averaged [SEG_ACT]→vision attention, pick the top layer's top-k heads, plot both."""
    import json

    import numpy as np
    import torch

    from reviosa.config import ConfigError
    from reviosa.data.format import DatasetError, InterRVOSDataset
    from reviosa.model.aml_heads import format_table, save_plots
    from reviosa.model.aml_heads import select_heads as run_selection
    from reviosa.model.batch import collate, random_training_sample
    from reviosa.model.config import ModelConfig
    from reviosa.model.errors import CheckpointError
    from reviosa.model.modeling import ReviosaModel

    try:
        ds = InterRVOSDataset.load(data)
    except DatasetError as err:
        raise typer.BadParameter(str(err), param_hint="--data") from None
    torch.manual_seed(seed)
    try:
        net = (ReviosaModel.from_pretrained(model, overrides=set_) if model
               else ReviosaModel.from_config(ModelConfig.from_yaml(config, set_)))
    except (ConfigError, CheckpointError) as err:
        raise typer.BadParameter(str(err), param_hint="--model / --config / --set") from None
    rng = np.random.default_rng(seed)
    videos = [v for v in ds.videos.values() if v.expressions]
    if not videos:
        raise typer.BadParameter(f"{data}: no video has expressions", param_hint="--data")
    pad = net.tokenizer.pad_token_id

    def batches():
        for i in range(samples):
            video = videos[int(rng.integers(len(videos)))]
            yield collate([random_training_sample(net.config, net.tokenizer, ds, video, rng)], pad)

    sel = run_selection(net, batches(), top_k=top_k)
    typer.echo(format_table(sel))
    paths = save_plots(sel, out)
    (out / "selection.json").write_text(json.dumps({"layer": sel.layer, "heads": sel.heads,
                                                    "aml_heads": [list(p) for p in sel.pairs],
                                                    "table": sel.table.round(6).tolist()}, indent=1))
    typer.echo("plots: " + ", ".join(str(p) for p in paths))


def convert_internvl(src: Path = typer.Argument(..., help="OpenGVLab InternVL-2.5 folder (model_type internvl_chat)"),
                     dst: Path = typer.Argument(..., help="Output folder (transformers model_type internvl)"),
                     overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists")) -> None:
    """Convert an original InternVL-2.5-1B/4B checkpoint (safetensors) to transformers' native InternVL layout."""
    from reviosa.model.convert import ConversionError, convert_internvl_checkpoint

    try:
        out = convert_internvl_checkpoint(src, dst, overwrite=overwrite)
    except ConversionError as err:
        raise typer.BadParameter(str(err), param_hint="SRC/DST") from None
    typer.echo(f"converted: {out}")


def convert_official(src: Path = typer.Argument(..., help="Official ReVIOSa checkpoint folder (convert_to_hf.py "
                                                "output, model_type reviosa_chat)"),
                     dst: Path = typer.Argument(..., help="Output folder: a reviosa checkpoint"),
                     config: str = typer.Option("1b", "--config", help="Model config for what the official "
                                                "checkpoint does not say (SAM2 version/size, LoRA, prompts, ...)"),
                     set_: list[str] = typer.Option([], "--set", help="Override a model config field, e.g. "
                                                    "--set sam2.version=2.1 (repeatable)"),
                     any_template: bool = typer.Option(False, "--any-template", help="Import a checkpoint trained "
                                                       "with a non-Qwen chat template (e.g. the official 4B's)"),
                     overwrite: bool = typer.Option(False, "--overwrite", help="Replace DST if it exists")) -> None:
    """Import a ReVIOSa trained with the official code (LoRA merged) as a reviosa checkpoint to predict, serve and
    fine-tune (``reviosa train --set init_from=DST``)."""
    from reviosa.config import ConfigError
    from reviosa.model.errors import CheckpointError
    from reviosa.model.official import import_official_checkpoint

    try:
        out = import_official_checkpoint(src, dst, config=config, overrides=set_, overwrite=overwrite,
                                         any_template=any_template)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config / --set") from None
    except CheckpointError as err:
        raise typer.BadParameter(str(err), param_hint="SRC/DST") from None
    typer.echo(f"imported: {out}")
