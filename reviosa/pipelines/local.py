"""Running a pipeline on this machine with ``kfp.local`` (every step a subprocess of this Python)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reviosa.pipelines.compile import load_pipeline

#: ``on_task(event, task, status)``: event "start" or "end", the task as kfp.local names it, "SUCCESS"/"FAILURE".
TaskCallback = Callable[[str, str, str], None]

# kfp.local's own log lines for a task (kfp/local/task_dispatcher.py), once colour codes are removed.
_TASK_START = re.compile(r"Executing task '(?P<task>[^']+)'")
_TASK_END = re.compile(r"Task '(?P<task>[^']+)' finished with status (?P<status>[A-Z]+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class LocalTask:
    """A step of a pipeline as kfp.local runs it: its log name, a readable label, and whether it may be skipped."""

    name: str
    label: str
    conditional: bool


def pipeline_tasks(name: str) -> list[LocalTask]:
    """The container steps of pipeline ``name``, labelled by display name (made unique by the inputs they read)."""
    spec = load_pipeline(name).pipeline_spec
    found: list[tuple[str, str, bool, frozenset[str]]] = []

    def walk(dag, conditional: bool) -> None:
        sources: dict[str, set[str]] = {}

        def inputs(task_name: str) -> set[str]:
            # Pipeline parameters a task reads, itself or through the tasks whose outputs it consumes.
            if task_name not in sources:
                task, sources[task_name] = dag.tasks[task_name], set()
                for p in task.inputs.parameters.values():
                    if p.component_input_parameter:
                        sources[task_name].add(p.component_input_parameter.removeprefix("pipelinechannel--"))
                    elif p.task_output_parameter.producer_task in dag.tasks:
                        sources[task_name] |= inputs(p.task_output_parameter.producer_task)
                for a in task.inputs.artifacts.values():
                    if a.task_output_artifact.producer_task in dag.tasks:
                        sources[task_name] |= inputs(a.task_output_artifact.producer_task)
            return sources[task_name]

        for task_name, task in dag.tasks.items():
            component = spec.components[task.component_ref.name]
            if component.WhichOneof("implementation") == "dag":
                walk(component.dag, conditional or bool(task.trigger_policy.condition))
            else:
                found.append((task.component_ref.name.removeprefix("comp-"), task.task_info.name or task_name,
                              conditional, frozenset(inputs(task_name))))

    walk(spec.root.dag, False)
    tasks = []
    for log_name, label, conditional, reads in found:
        twins = [r for _, lab, _, r in found if lab == label]
        if len(twins) > 1:
            own = reads - frozenset.intersection(*twins)
            label += f" [{', '.join(sorted(own)) or log_name}]"
        tasks.append(LocalTask(log_name, label, conditional))
    return tasks


class _TaskEvents(logging.Filter):
    """Sees kfp.local's task records on the root logger (its handlers are swapped per task, filters stay)."""

    def __init__(self, on_task: TaskCallback):
        super().__init__()
        self.on_task = on_task

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = _ANSI.sub("", record.getMessage())
            if m := _TASK_START.fullmatch(message):
                self.on_task("start", m["task"], "")
            elif m := _TASK_END.fullmatch(message):
                self.on_task("end", m["task"], m["status"])
        except Exception:  # a progress display must never fail the pipeline; the trace lands in the log
            traceback.print_exc(file=sys.stderr)
        return True


@contextlib.contextmanager
def task_events(on_task: TaskCallback) -> Iterator[None]:
    """Call ``on_task`` as kfp.local starts and ends each task while the block runs."""
    events = _TaskEvents(on_task)
    logging.getLogger().addFilter(events)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(events)


def run_local(name: str, params: dict[str, Any], pipeline_root: str | os.PathLike,
              on_task: TaskCallback | None = None) -> dict[str, Any]:
    """Run pipeline ``name`` with ``kfp.local.SubprocessRunner(use_venv=False)``; returns its task outputs.

    Resource, GPU and Kubernetes settings are ignored locally; artefacts are folders under ``pipeline_root``.
    ``on_task`` hears each task start and end (see :func:`task_events`).
    """
    from kfp import local

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # The project image has reviosa and kfp installed; locally this venv plays that role (no pip install).
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    with task_events(on_task) if on_task else contextlib.nullcontext():
        task = load_pipeline(name)(**params)
    outputs = getattr(task, "outputs", None) or {}
    return dict(outputs) if isinstance(outputs, dict) else {"output": task.output}
