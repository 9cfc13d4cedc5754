"""Where a registered model version comes from (``reviosa runs lineage``): version → logged model → training run →
dataset version (tag, hash) → code commit → KFP run, and the scores of its evaluation run."""

from __future__ import annotations

from dataclasses import dataclass, field

from reviosa.tracking.context import DataRef
from reviosa.tracking.naming import (
    CHAMPION,
    TAG_EVAL_RUN,
    TAG_GIT_COMMIT,
    TAG_GIT_DIRTY,
    TAG_KFP_RUN_ID,
    TAG_KFP_RUN_NAME,
    TAG_SCORE_PREFIX,
)
from reviosa.tracking.registry import TAG_CHAMPION_SINCE, TAG_DEPLOYED_AT, TAG_DEPLOYED_TO, logged_model_id, resolve
from reviosa.tracking.ui import model_version_url, run_url


@dataclass
class Lineage:
    """One registered version and everything it traces back to (empty strings where a link is missing)."""

    name: str
    version: str
    aliases: list[str]
    source: str
    model_id: str = ""
    model_name: str = ""
    train_run_id: str = ""
    train_run_name: str = ""
    experiment: str = ""
    data: DataRef = field(default_factory=DataRef)
    inputs: list[str] = field(default_factory=list)
    commit: str = ""
    dirty: bool = False
    kfp_run_id: str = ""
    kfp_run_name: str = ""
    eval_run_id: str = ""
    eval_run_name: str = ""
    eval_inputs: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tracking_uri: str = ""
    experiment_id: str = ""


def parse_model_ref(ref: str) -> tuple[str, str | None, str | None]:
    """``name@alias`` / ``name/3`` / ``name`` → (name, alias, version)."""
    name, at, alias = ref.partition("@")
    if at:
        if not name or not alias:
            raise ValueError(f"{ref!r}: expected MODEL@ALIAS, e.g. reviosa@champion")
        return name, alias, None
    head, slash, tail = ref.rpartition("/")
    if slash and tail.isdigit() and head:
        return head, None, tail
    if not ref:
        raise ValueError("give a registered model: MODEL, MODEL@ALIAS or MODEL/VERSION")
    return ref, None, None


def _inputs(run) -> list[str]:
    found = []
    for d in (run.inputs.dataset_inputs if run.inputs else []):
        context = next((t.value for t in d.tags if t.key == "mlflow.data.context"), "")
        found.append(f"{d.dataset.name} (digest {d.dataset.digest}{', ' + context if context else ''})")
    return found


def trace(client, ref: str) -> Lineage:
    """Follow ``ref`` (``MODEL[@alias|/version]``; bare: the champion, else the newest version) back to its data,
    code and pipeline run."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_ref(ref)
    try:
        if alias:
            mv = resolve(client, name, alias)
        elif version:
            mv = client.get_model_version(name, version)
        else:
            try:
                mv = resolve(client, name, CHAMPION)
            except LookupError:
                versions = client.search_model_versions(f"name='{name}'")
                if not versions:
                    raise LookupError(f"registered model {name!r} has no versions") from None
                mv = max(versions, key=lambda v: int(v.version))
    except MlflowException as err:
        raise LookupError(f"{ref}: {err.message}") from None
    tags = mv.tags or {}
    lin = Lineage(name=name, version=str(mv.version), aliases=sorted(mv.aliases or []), source=mv.source,
                  model_id=logged_model_id(mv), tracking_uri=client.tracking_uri.rstrip("/"))
    if lin.model_id:
        lin.model_name = client.get_logged_model(lin.model_id).name
    else:
        lin.notes.append("the version's source is a run folder, not a logged model")
    if mv.run_id:
        run = client.get_run(mv.run_id)
        lin.train_run_id, lin.train_run_name = run.info.run_id, run.info.run_name or ""
        lin.experiment_id = run.info.experiment_id
        lin.experiment = client.get_experiment(run.info.experiment_id).name
        lin.data, lin.inputs = DataRef.from_tags(run.data.tags), _inputs(run)
        run_tags = run.data.tags
    else:
        lin.notes.append("the version names no training run")
        lin.data, run_tags = DataRef.from_tags(tags), tags
    lin.commit = run_tags.get(TAG_GIT_COMMIT) or tags.get(TAG_GIT_COMMIT, "")
    lin.dirty = (run_tags.get(TAG_GIT_DIRTY) or tags.get(TAG_GIT_DIRTY)) == "true"
    lin.kfp_run_id = run_tags.get(TAG_KFP_RUN_ID) or tags.get(TAG_KFP_RUN_ID, "")
    lin.kfp_run_name = run_tags.get(TAG_KFP_RUN_NAME) or tags.get(TAG_KFP_RUN_NAME, "")
    if eval_id := tags.get(TAG_EVAL_RUN):
        scored = client.get_run(eval_id)
        lin.eval_run_id, lin.eval_run_name = eval_id, scored.info.run_name or ""
        lin.scores, lin.eval_inputs = dict(scored.data.metrics), _inputs(scored)
    else:
        lin.scores = {k.removeprefix(TAG_SCORE_PREFIX): float(v) for k, v in tags.items()
                      if k.startswith(TAG_SCORE_PREFIX)}
    for key, what in ((TAG_CHAMPION_SINCE, "champion since"), (TAG_DEPLOYED_TO, "served by InferenceService"),
                      (TAG_DEPLOYED_AT, "deployed at")):
        if tags.get(key):
            lin.notes.append(f"{what} {tags[key]}")
    return lin


def format_lineage(lin: Lineage) -> str:
    """The chain, one link a line, with UI links."""
    ui = lin.tracking_uri
    aliases = f" (@{', @'.join(lin.aliases)})" if lin.aliases else ""
    data = lin.data
    if data.version:
        dataset = f"{data.version} (md5 {data.md5 or '?'}) {data.path or ''} in {data.repo or '?'}".replace("  ", " ")
    else:
        dataset = f"untracked: {data.note or 'no dataset version recorded'}"
    lines = [f"{lin.name} version {lin.version}{aliases}  {model_version_url(ui, lin.name, lin.version)}",
             f"  <- logged model  {lin.model_name or '-'} ({lin.model_id or 'none'}), source {lin.source}",
             f"  <- training run  {lin.train_run_name or '-'} (run {lin.train_run_id or '-'}, experiment "
             f"{lin.experiment or '-'})  {run_url(ui, lin.experiment_id, lin.train_run_id)}",
             f"  <- dataset       {dataset}"]
    lines += [f"                   input {i}" for i in lin.inputs]
    lines += [f"  <- code          commit {lin.commit or 'unknown'}" + (" (uncommitted changes)" if lin.dirty else ""),
              "  <- KFP run       " + (f"{lin.kfp_run_id} {lin.kfp_run_name}".strip() if lin.kfp_run_id else
                                       "none (not trained by a pipeline)")]
    if lin.scores:
        where = f" (evaluation run {lin.eval_run_name} {lin.eval_run_id}" + \
            (f", on {', '.join(lin.eval_inputs)})" if lin.eval_inputs else ")") if lin.eval_run_id else ""
        lines.append(f"  scores{where}:")
        lines += [f"    {k:12s} {v:.4f}" for k, v in sorted(lin.scores.items())]
    else:
        lines.append("  scores: none recorded")
    lines += [f"  note: {n}" for n in lin.notes]
    return "\n".join(lines)
