"""The synthetic interaction world: procedurally generated InterRVOS splits with exact masks.

Videos of 2-4 flat-coloured shapes (by default circle, square, triangle, star and diamond, each at most once per
video; three sizes, 15-24 px across in a 64-px frame; hexagon on request) on a plain or faintly textured background.
Free objects move on their own (still, left, right, up, down, bouncing, rotating); pairs interact (A chases /
pushes / hits / follows / circles B, or A and B move together). Masks are the exact *visible* pixels of each object
(a z-order decides occlusion; an object out of view has a ``null`` RLE entry), ``scene_graph.json`` holds the ground
truth, and expressions are written from it with role-correct actor/target ids in both directions (see
:mod:`.expressions`).

Output is deterministic: video ``i`` of a split depends only on the config, the seed, the split name and
``i``, so growing a split never changes its earlier videos, and the same seed gives byte-identical files.

Command line::

    reviosa data synth --out DIR --videos 200 --seed 0                 # one split in DIR
    reviosa data synth --out DIR --split-names train,val --videos 200,50   # DIR/train and DIR/val
    reviosa data synth --out DIR --videos 50 --config my.yaml --set frames=24 --size 192x256 --workers 2

Named splits are seeded by their name too (their videos differ from each other and are called
``<name>_00000``, ...); an unnamed split's videos are ``synth_00000``, .... An interrupted run resumes
from the videos already written. Settings: :class:`SyntheticConfig` (``configs/default.yaml`` beside this file).
"""

from reviosa.data.synthetic.config import SyntheticConfig
from reviosa.data.synthetic.world import RenderedVideo, render_video, video_seed
from reviosa.data.synthetic.writer import build_video, generate_split, generate_splits, split_stats, video_name

__all__ = [
    "SyntheticConfig", "RenderedVideo", "render_video",
    "video_seed", "build_video", "generate_split", "generate_splits", "split_stats", "video_name",
]
