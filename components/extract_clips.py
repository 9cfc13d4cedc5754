"""Cut raw videos into fixed-length clips of JPEG frames."""

from kfp.dsl import Dataset, Input, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def extract_clips(videos: Input[Dataset], clips: Output[Dataset], config: str = "paper", overrides: list = []):
    """Every video file of ``videos`` → ``<clips>/<video>_bNNN/<frame>.jpg`` (ClipConfig ``config`` + overrides)."""
    from reviosa.pipelines import steps

    clips.metadata.update(steps.extract_clips(videos.path, clips.path, config, overrides))
