"""Stage 0, mask tracks: every object needs a track, given in ``mask_dict.json`` or made by SAM2 from a prompt.

Objects with prompts (``prompts.json``, see :mod:`reviosa.annotate.prompts_file`) but no given track are tracked
by :mod:`reviosa.annotate.mask_tracks` first; an object with neither is rejected here with a clear error instead
of being annotated without masks. This check stays apart from the SAM2 tracker so that it runs without torch.
"""

from __future__ import annotations

from reviosa.data.format import MASK_FILE, META_FILE, DatasetError, InterRVOSDataset
from reviosa.data.rle import rle_area


def check_tracks(ds: InterRVOSDataset) -> None:
    """Every video lists its objects and every object has a mask track that is non-empty somewhere."""
    for name, video in ds.videos.items():
        if not video.objects:
            raise DatasetError(ds.root / META_FILE, "video lists no 'objects' to annotate", video=name, field="objects")
        for obj in video.objects.values():
            track = ds.mask_dict.get(obj.anno_id)
            if track is None:
                raise DatasetError(ds.root / MASK_FILE, f"object {obj.obj_id} has no mask track and no SAM2 "
                                   "prompt (give its track, or a prompt in prompts.json)", video=name,
                                   field=str(obj.anno_id))
            if len(track) != video.num_frames:
                raise DatasetError(ds.root / MASK_FILE, f"mask track has {len(track)} entries but the video has "
                                   f"{video.num_frames} frames", video=name, field=str(obj.anno_id))
            if not any(r is not None and rle_area(r) > 0 for r in track):
                raise DatasetError(ds.root / MASK_FILE, f"object {obj.obj_id} is empty in every frame", video=name,
                                   field=str(obj.anno_id))
