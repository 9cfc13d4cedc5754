"""Exit handler: record how the run ended (state, failing task, error) as an artefact and in the log."""

from kfp.dsl import Artifact, Output, PipelineTaskFinalStatus, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def record_failure(status: PipelineTaskFinalStatus, record: Output[Artifact]):
    """Runs whatever happened to the steps inside the ExitHandler."""
    from reviosa.pipelines import steps

    record.metadata.update(steps.record_status(status.state, status.pipeline_job_resource_name,
                                               status.pipeline_task_name, status.error_code,
                                               status.error_message, record.path))
