"""Cut raw videos into fixed-length clips of JPEG frames."""

from kfp.dsl import Dataset, Input, Output, component

from reviosa.pipelines.image import IMAGE


@component(base_image=IMAGE, install_kfp_package=False)
def extract_clips(videos: Input[Dataset], clips: Output[Dataset], bin_frames: int = 1000, clip_frames: int = 500):
    """Every video file of ``videos`` → ``<clips>/<video>_bNNN/<frame>.jpg``."""
    from reviosa.pipelines import steps

    clips.metadata.update(steps.extract_clips(videos.path, clips.path, bin_frames, clip_frames))
