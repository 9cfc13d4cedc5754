"""Train ReVIOSa (DeepSpeed) on a split; the final ``save_pretrained`` folder is the output model."""

from kfp.dsl import Dataset, Input, Model, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def train(train_split: Input[Dataset], val_split: Input[Dataset], model: Output[Model], model_size: str = "tiny",
          epochs: float = 1.0, aml: bool = True, tokens: bool = True, steps: int = 0, tracking_uri: str = "",
          work_dir: str = ""):
    """Checkpoints go to ``work_dir`` (default: next to the output), so a retried attempt there resumes."""
    from reviosa.pipelines import steps as s

    model.metadata.update(s.train(train_split.path, val_split.path, model.path, work_dir or model.path + ".work",
                                  model_size, epochs, aml, tokens, steps, tracking_uri))
