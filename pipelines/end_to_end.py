"""End-to-end pipeline: annotate → snapshot → train → evaluate → register → deploy, failures recorded."""

from kfp import dsl

from components.deploy import deploy
from components.record_failure import record_failure
from components.register import register
from components.snapshot import snapshot
from components.train import train
from pipelines.annotation import annotate_steps
from pipelines.evaluation import evaluate_steps
from reviosa.pipelines.image import IMAGE
from reviosa.pipelines.resources import cpu, flaky, gpu, s3_env


@dsl.pipeline(name="reviosa-end-to-end",
              description="Raw splits → annotated, DVC-versioned dataset → ReVIOSa trained on the GPU pool → "
                          "InterRVOS scores → MLflow registry (candidate) → KServe InferenceService.")
def end_to_end_pipeline(raw_train: str, raw_val: str, data_repo: str, model_size: str = "1b", epochs: float = 0.0,
                        aml: bool = True, tokens: bool = True, train_overrides: list = [],
                        tracking_uri: str = "http://mlflow.reviosa.svc.cluster.local:5000",
                        backend: str = "offline", base_url: str = "", llm_model: str = "",
                        annotate_overrides: list = [],
                        model_name: str = "reviosa", namespace: str = "reviosa", deploy_model: bool = True,
                        max_eval_videos: int = 0):
    recorder = cpu(record_failure(), "0.25", "512Mi")
    recorder.set_display_name("record final status")
    with dsl.ExitHandler(recorder, name="reviosa-run"):
        labelled_train = annotate_steps(raw_train, backend, base_url, llm_model, annotate_overrides)
        labelled_val = annotate_steps(raw_val, backend, base_url, llm_model, annotate_overrides)
        snap_train = snapshot(split=labelled_train.outputs["annotated"], repo=data_repo, name="train",
                              message="end-to-end pipeline: annotated train split")
        snap_val = snapshot(split=labelled_val.outputs["annotated"], repo=data_repo, name="val",
                            message="end-to-end pipeline: annotated val split").after(snap_train)
        for snap in (snap_train, snap_val):
            flaky(s3_env(cpu(snap, "1", "4Gi"))).set_caching_options(False)
        snap_train.set_display_name("dataset snapshot (DVC): train")
        snap_val.set_display_name("dataset snapshot (DVC): val")
        job = train(train_split=labelled_train.outputs["annotated"], val_split=labelled_val.outputs["annotated"],
                    config=model_size, overrides=train_overrides, epochs=epochs, aml=aml, tokens=tokens,
                    tracking_uri=tracking_uri).after(snap_val)
        s3_env(gpu(job, 1, "8", "64Gi"))
        job.set_display_name("train ReVIOSa")
        scored = evaluate_steps(job.outputs["model"], labelled_val.outputs["annotated"], max_eval_videos)
        reg = register(model=job.outputs["model"], metrics=scored.outputs["metrics"], tracking_uri=tracking_uri,
                       name=model_name, data_version=snap_val.output)
        flaky(s3_env(cpu(reg, "1", "4Gi"))).set_caching_options(False)
        reg.set_display_name("register (MLflow, candidate)")
        with dsl.If(deploy_model == True):  # noqa: E712
            dep = deploy(model=job.outputs["model"], image=IMAGE, name=model_name, namespace=namespace).after(reg)
            flaky(cpu(dep, "0.5", "1Gi")).set_caching_options(False)
            dep.set_display_name("deploy (KServe)")
