"""Train ReVIOSa (DeepSpeed) on a split; the final ``save_pretrained`` folder is the output model."""

from kfp.dsl import Dataset, Input, Model, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def train(train_split: Input[Dataset], val_split: Input[Dataset], model: Output[Model], config: str = "tiny",
          overrides: list = [], epochs: float = 0.0, aml: bool = True, tokens: bool = True, tracking_uri: str = "",
          work_dir: str = ""):
    """Train config ``config`` (a shipped name or path) with ``overrides``, then the pipeline's UI switches.

    Checkpoints go to ``work_dir`` (default: next to the output), so a retried attempt there resumes.
    """
    from reviosa.pipelines import steps

    switches = steps.train_switches(epochs, aml, tokens, tracking_uri)
    model.metadata.update(steps.train(train_split.path, val_split.path, model.path, work_dir or model.path + ".work",
                                      config, list(overrides) + switches))
