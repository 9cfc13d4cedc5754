"""Overlay pictures: upscaled small frames, actor/target outlines on the masks' own edges, a legend band below."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reviosa.visualize.overlay import ACTOR_RGB, TARGET_RGB, overlay_frames, write_overlay

EXPRESSION = "the person who is handing a blue box to the other one"
ANSWER = "Sure, it is [SEG_ACT] and [SEG_TAR]."


def scene(n: int = 2, h: int = 64, w: int = 64):
    """Noisy background, a disc (actor) and a rectangle (target), neither touching the border."""
    rng = np.random.default_rng(0)
    frames = (rng.integers(60, 120, (n, h, w, 3))).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    actor = np.broadcast_to((yy - h * 0.45) ** 2 + (xx - w * 0.3) ** 2 < (min(h, w) * 0.18) ** 2, (n, h, w)).copy()
    target = np.zeros((n, h, w), bool)
    target[:, int(h * 0.3):int(h * 0.8), int(w * 0.6):int(w * 0.9)] = True
    frames[actor] = (200, 170, 120)
    frames[target] = (80, 80, 160)
    return frames, actor, target


def up(a: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour upscale of an (H, W) mask or (H, W, 3) image by an integer factor."""
    return a.repeat(k, axis=0).repeat(k, axis=1)


def rim(mask: np.ndarray) -> np.ndarray:
    """Mask XOR its 3x3 erosion: mask pixels with any of their 8 neighbours outside (the border counts as outside)."""
    p = np.pad(mask, 1)
    h, w = mask.shape
    eroded = np.logical_and.reduce([p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)])
    return mask & ~eroded


def is_colour(img: np.ndarray, rgb) -> np.ndarray:
    return np.all(img == np.asarray(rgb, np.uint8), axis=-1)


def test_small_frames_are_upscaled_to_at_least_256_with_the_legend_below():
    frames, actor, target = scene()
    out = overlay_frames(frames, actor, target, expression=EXPRESSION, answer=ANSWER)
    assert out.dtype == np.uint8 and out.shape[0] == 2
    assert out.shape[2] >= 256 and out.shape[1] > 256  # the frame is 256x256, the legend adds rows below
    assert out.shape[2] == 256  # an integer factor: every source pixel becomes the same 4x4 block
    # A rectangular frame: the short side reaches 256.
    f, a, _ = scene(1, 24, 32)
    small = overlay_frames(f, a, min_side=256)
    assert small.shape[2] >= 256 * 32 / 24 and small.shape[1] > 256
    assert overlay_frames(f, a, min_side=128).shape[2] < small.shape[2]


def test_large_frames_are_never_downscaled():
    frames, actor, target = scene(1, 300, 400)
    out = overlay_frames(frames, actor, target, alpha=0.0)
    assert out.shape[2] == 400
    body = out[0, :300]
    outline = is_colour(body, ACTOR_RGB) | is_colour(body, TARGET_RGB)
    assert np.array_equal(body[~outline], frames[0][~outline])


def test_actor_outline_lies_on_the_actor_mask_edge():
    frames, actor, target = scene()
    out = overlay_frames(frames, actor, target, alpha=0.0)
    k = 4
    body = out[0, :64 * k]
    drawn = is_colour(body, ACTOR_RGB)
    assert drawn.any()
    # The edge as computed at the source resolution, then upscaled: the outline may only fall inside it...
    assert not (drawn & ~up(rim(actor[0]), k)).any()
    # ...and it closes the shape: the outermost ring of the upscaled mask is all actor colour.
    assert drawn[rim(up(actor[0], k))].all()
    # Nothing inside the shape away from the edge is painted.
    interior = up(actor[0] & ~rim(actor[0]), k)
    assert not (drawn & interior).any()


def test_outside_the_outlines_the_frame_is_the_upscaled_input():
    frames, actor, target = scene()
    k = 4
    for alpha in (0.0, 0.3):
        out = overlay_frames(frames, actor, target, alpha=alpha)
        for t in range(len(frames)):
            body, src = out[t, :64 * k], up(frames[t], k)
            inside = up(actor[t] | target[t], k)
            assert np.array_equal(body[~inside], src[~inside])
            if alpha == 0:
                outline = is_colour(body, ACTOR_RGB) | is_colour(body, TARGET_RGB)
                assert np.array_equal(body[~outline], src[~outline])
            else:  # the fill tints the inside without hiding it
                fill = up(actor[t] & ~rim(actor[t]), k)
                diff = np.abs(body[fill].astype(int) - src[fill].astype(int))
                assert diff.max() > 0 and diff.max() < 128


def test_target_colour_only_when_a_target_is_given():
    frames, actor, target = scene()
    with_target = overlay_frames(frames, actor, target, expression=EXPRESSION, answer=ANSWER)
    without = overlay_frames(frames, actor, None, expression=EXPRESSION, answer="Sure, it is [SEG_ACT].")
    assert is_colour(with_target[:, :256], TARGET_RGB).any()
    assert is_colour(with_target[:, 256:], TARGET_RGB).any()  # its legend swatch
    assert not is_colour(without, TARGET_RGB).any()
    assert is_colour(without[:, :256], ACTOR_RGB).any() and is_colour(without[:, 256:], ACTOR_RGB).any()
    # The outline sits on the target's edge too.
    drawn = is_colour(with_target[0, :256], TARGET_RGB)
    assert not (drawn & ~up(rim(target[0]), 4)).any()


def test_legend_shows_text_and_follows_it():
    frames, actor, target = scene()
    a = overlay_frames(frames, actor, target, expression=EXPRESSION, answer=ANSWER)
    b = overlay_frames(frames, actor, target, expression="the dog", answer=ANSWER)
    bare = overlay_frames(frames, actor, target)
    band = a[0, 256:]
    background = band[-1, -1]
    assert (np.any(band != background, axis=-1)).mean() > 0.02
    # Each text line adds rows; a different expression draws different pixels.
    assert a.shape[1] > b.shape[1] > bare.shape[1] > 256
    assert not np.array_equal(a[0, 256:256 + b.shape[1] - 256], b[0, 256:])
    # The frame label changes per frame, so the two bands differ although the text is the same.
    assert not np.array_equal(a[0, 256:], a[1, 256:])
    named = overlay_frames(frames, actor, target, frame_names=["00007", "00008"])
    assert not np.array_equal(named[0, 256:], bare[0, 256:])


def test_long_text_is_wrapped_and_cut_to_the_band():
    frames, actor, target = scene(1)
    short = overlay_frames(frames, actor, target, expression=EXPRESSION, answer=ANSWER)
    long = overlay_frames(frames, actor, target, expression=" ".join(["word"] * 200) + " " + "x" * 300,
                          answer=ANSWER)
    longer = overlay_frames(frames, actor, target, expression=" ".join(["word"] * 400), answer=ANSWER)
    assert long.shape[2] == longer.shape[2] == 256  # the text never widens the picture
    assert short.shape[1] < long.shape[1] == longer.shape[1]  # it takes a few lines at most, then is cut
    # Non-ASCII letters do not break the text drawing.
    overlay_frames(frames, actor, target, expression="the café owner’s dog", answer=ANSWER)


def test_shape_mismatch_is_refused():
    frames, actor, _ = scene()
    with pytest.raises(ValueError, match="do not match"):
        overlay_frames(frames, actor[:, :10])
    with pytest.raises(ValueError, match="frame names"):
        overlay_frames(frames, actor, frame_names=["0"])


def test_gif_keeps_the_overlay_size(tmp_path):
    frames, actor, target = scene()
    out = overlay_frames(frames, actor, target, expression=EXPRESSION, answer=ANSWER)
    path = write_overlay(tmp_path / "overlay.gif", out)
    with Image.open(path) as gif:
        assert gif.size == (out.shape[2], out.shape[1]) and gif.n_frames == 2
