"""Train ReVIOSa (DeepSpeed) on a split; the final ``save_pretrained`` folder is the output model."""

from kfp.dsl import Dataset, Input, Model, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def train(train_split: Input[Dataset], val_split: Input[Dataset], model: Output[Model], config: str = "tiny",
          overrides: list = [], epochs: float = 0.0, aml: bool = True, tokens: bool = True, tracking_uri: str = "",
          work_dir: str = "", nodes: int = 1, gpus_per_node: int = 1, image: str = "", namespace: str = "reviosa",
          data_version: str = "", data_md5: str = "", data_repo: str = "", data_path: str = "", kfp_run_id: str = "",
          kfp_run_name: str = ""):
    """Train config ``config`` (a shipped name or path) with ``overrides``, then the pipeline's UI switches.

    Checkpoints go to ``work_dir`` (default: next to the output), so a retried attempt there resumes. One node trains
    in this pod (torchrun with ``gpus_per_node`` processes); ``nodes > 1`` runs a Kubeflow Trainer TrainJob of
    ``image`` in ``namespace`` and collects its model. The MLflow run records the dataset version (``data_*``, else
    the one ``train_split`` was fetched at) and the KFP run; its run and logged model ids become metadata.
    """
    from reviosa.pipelines import steps

    switches = steps.train_switches(epochs, aml, tokens, tracking_uri) + steps.lineage_overrides(
        train_split.metadata, data_version, data_md5, data_repo, data_path, kfp_run_id, kfp_run_name)
    model.metadata.update(steps.train(train_split.path, val_split.path, model.path, work_dir or model.path + ".work",
                                      config, list(overrides) + switches, nodes, gpus_per_node, image, namespace))
