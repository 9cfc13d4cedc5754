"""The InterRVOS dataset format: a MeViS-compatible split with actor/target roles beside it.

A split directory holds::

    meta_expressions.json   {"videos": {vid: {"frames": [...], "expressions": {exp_id: {...}}, ...}}}
    mask_dict.json          {str(anno_id): [RLE | null per frame]}
    JPEGImages/<vid>/<frame>.jpg     (or a video file named by the video's "video_file")
    scene_graph.json        optional, ground truth of the synthetic world

MeViS fields (``exp``, ``obj_id``, ``anno_id``, ``frames``) keep their meaning: ``anno_id`` lists the
objects a plain RVOS model must segment (the actor side). InterRVOS adds, per expression, ``type``
(``single`` | ``multi`` | ``interaction``), ``direction`` (``unidirectional`` | ``bidirectional``) and
``target_obj_id`` / ``target_anno_id``; per video, ``objects`` (obj_id -> anno_id, category) and the
frame size. MeViS data, which has none of these, loads unchanged with every expression typed from its
object count.

The released InterRVOS layout (``subject/object`` and ``caption_type`` per expression, and in val a second pair
``new_meta_expressions.json`` / ``new_mask_dict.json`` that the Actor and Target scores read) loads too, without
losing a field: :mod:`reviosa.data.official` classifies its expressions into the fields above and keeps what they
cannot give back, so either layout is written back exactly (``save(layout=...)``).
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reviosa.data import official as off
from reviosa.data.atomic import atomic_write_text
from reviosa.data.names import UnsafeName, check_component, inside, relative_inside
from reviosa.data.rle import MAX_SIDE, RLE, check_rle, decode_rle
from reviosa.data.video import VideoDecodeError, decode_video, read_image

META_FILE = "meta_expressions.json"
MASK_FILE = "mask_dict.json"
FRAMES_DIR = "JPEGImages"
SCENE_GRAPH_FILE = "scene_graph.json"
#: the official val folder's second pair: the expressions and masks of the Actor and Target scores
NEW_META_FILE = "new_meta_expressions.json"
NEW_MASK_FILE = "new_mask_dict.json"
LAYOUTS = ("reviosa", "official")
#: frame files a frame-folder video may hold, in the order readers look for them (validation accepts the same)
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


class DatasetError(ValueError):
    """A dataset file is malformed; the message names the file, the video and the field."""

    def __init__(self, file: str | os.PathLike, message: str, *, video: str | None = None,
                 field: str | None = None):
        self.file, self.video, self.field, self.reason = str(file), video, field, message
        where = [self.file]
        if video is not None:
            where.append(f"video {video!r}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join([', '.join(where), message])}")


class ExpressionType(str, enum.Enum):
    """Kinds of referring expression."""

    SINGLE = "single"
    MULTI = "multi"
    INTERACTION = "interaction"


class Direction(str, enum.Enum):
    """Interaction directionality: roles exist only for unidirectional interactions."""

    UNIDIRECTIONAL = "unidirectional"
    BIDIRECTIONAL = "bidirectional"


@dataclass
class ObjectInfo:
    """One object of a video: its mask-track key in ``mask_dict.json`` and optional labels."""

    obj_id: int
    anno_id: int
    category: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Expression:
    """A referring expression; interaction expressions carry separate actor and target objects."""

    exp_id: str
    text: str
    obj_ids: list[int]
    anno_ids: list[int]
    type: ExpressionType = ExpressionType.SINGLE
    direction: Direction | None = None
    target_obj_ids: list[int] = field(default_factory=list)
    target_anno_ids: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    #: what only the official layout says (see :mod:`reviosa.data.official`); empty for reviosa-born expressions
    official: dict[str, Any] = field(default_factory=dict)

    @property
    def has_target(self) -> bool:
        """True for role-annotated (unidirectional) interaction expressions."""
        return bool(self.target_anno_ids)

    @property
    def object_anno_ids(self) -> list[int]:
        """``subject/object.anno_id.object`` of the official form: the GT of the official Target score."""
        if not self.official:
            return list(self.target_anno_ids)
        return off.object_ids(off.core(self.text, self.fields, self.official))

    @property
    def fields(self) -> off.Fields:
        """The ids, type and direction as the official codec sees them."""
        return off.Fields(list(self.obj_ids), list(self.anno_ids), self.type.value,
                          self.direction.value if self.direction else None, list(self.target_obj_ids),
                          list(self.target_anno_ids))

    def to_json(self) -> dict[str, Any]:
        """MeViS fields first, InterRVOS fields beside them."""
        out: dict[str, Any] = {"exp": self.text, "obj_id": list(self.obj_ids), "anno_id": list(self.anno_ids),
                               "type": self.type.value}
        if self.direction is not None:
            out["direction"] = self.direction.value
        if self.type is ExpressionType.INTERACTION or self.target_anno_ids:
            out["target_obj_id"] = list(self.target_obj_ids)
            out["target_anno_id"] = list(self.target_anno_ids)
        if self.official:
            out["official"] = self.official
        out.update(self.extra)
        return out


@dataclass
class Video:
    """One video: its ordered frame names, objects and expressions."""

    name: str
    frames: list[str]
    expressions: dict[str, Expression] = field(default_factory=dict)
    objects: dict[int, ObjectInfo] = field(default_factory=dict)
    height: int | None = None
    width: int | None = None
    video_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: height/width were read from the masks or frames, not the file: saving must not add them
    size_inferred: bool = field(default=False, compare=False, repr=False)

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def to_json(self, layout: str = "reviosa") -> dict[str, Any]:
        """The video's JSON in the reviosa or the official layout (they differ only in the expressions)."""
        if layout == "official":
            exps = {k: official_json(e) for k, e in self.expressions.items()}
        elif layout == "reviosa":
            exps = {k: e.to_json() for k, e in self.expressions.items()}
        else:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        out: dict[str, Any] = {"frames": list(self.frames), "expressions": exps}
        if self.objects:
            out["objects"] = {str(o.obj_id): {"anno_id": o.anno_id, "category": o.category, **o.attributes}
                              for o in self.objects.values()}
        if self.height is not None and not self.size_inferred:
            out["height"], out["width"] = self.height, self.width
        if self.video_file is not None:
            out["video_file"] = self.video_file
        out.update(self.extra)
        return out


@dataclass
class InterRVOSDataset:
    """A loaded split: videos, their expressions and the mask tracks keyed by ``anno_id``."""

    root: Path
    videos: dict[str, Video]
    mask_dict: dict[int, list[RLE | None]]
    #: the layout the files were read in, and the one ``save`` writes by default
    layout: str = "reviosa"
    #: an official val folder's ``new_*`` pair (the Actor and Target scores' expressions and masks), else None
    role_split: InterRVOSDataset | None = None
    meta_file: str = META_FILE
    mask_file: str = MASK_FILE

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, root: str | os.PathLike, *, check_frames: bool = True, meta_file: str = META_FILE,
             mask_file: str = MASK_FILE, decode_masks: bool = False) -> "InterRVOSDataset":
        """Load and validate a split directory (either layout); raise :class:`DatasetError` on the first problem.

        Beside ``meta_expressions.json``, a ``new_meta_expressions.json`` (official val) is loaded and checked too,
        as :attr:`role_split`. Every RLE is checked (size, and run lengths read as pycocotools reads them, covering
        the mask exactly); ``decode_masks`` also decodes each one (what ``reviosa data validate`` does).
        """
        root = Path(root)
        meta_path, mask_path = root / meta_file, root / mask_file
        meta = _read_json(meta_path)
        if not mask_path.exists():
            # Every command that scores or predicts reads the tracks; an empty {} says there are none yet.
            raise DatasetError(mask_path, f"file does not exist; it holds the mask tracks of the objects that "
                               f"{meta_file} names (write {{}} for a split that has none yet)")
        masks_raw = _read_json(mask_path)
        if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
            raise DatasetError(meta_path, "top level must be an object with a 'videos' object", field="videos")
        if not isinstance(masks_raw, dict):
            raise DatasetError(mask_path, "top level must be an object {anno_id: [RLE|null, ...]}")
        mask_dict: dict[int, list[RLE | None]] = {}
        for key, track in masks_raw.items():
            try:
                anno = int(key)
            except ValueError:
                raise DatasetError(mask_path, f"anno_id key {key!r} is not an integer", field=key) from None
            if anno in mask_dict:
                raise DatasetError(mask_path, f"duplicate anno_id {anno} (keys {key!r} and another)", field=key)
            if not isinstance(track, list):
                raise DatasetError(mask_path, "mask track must be a list of RLE or null per frame", field=key)
            mask_dict[anno] = track
        videos = {name: _parse_video(meta_path, name, v) for name, v in meta["videos"].items()}
        ds = cls(root=root, videos=videos, mask_dict=mask_dict, layout=_layout(meta_path, meta["videos"]),
                 meta_file=meta_file, mask_file=mask_file)
        ds.validate(check_frames=check_frames, decode_masks=decode_masks)
        if meta_file == META_FILE and (root / NEW_META_FILE).exists():
            if not (root / NEW_MASK_FILE).exists():
                raise DatasetError(root / NEW_MASK_FILE, f"file does not exist, but {NEW_META_FILE} does (the Actor "
                                   "and Target scores read both)")
            ds.role_split = cls.load(root, check_frames=False, meta_file=NEW_META_FILE, mask_file=NEW_MASK_FILE,
                                     decode_masks=decode_masks)
            ds._check_role_split()
        return ds

    def _check_role_split(self) -> None:
        # Predictions are made for meta_expressions.json: a scored expression that is not there has none.
        role = self.role_split
        path = role.root / role.meta_file
        for vid, video in role.videos.items():
            main = self.videos.get(vid)
            if main is None:
                raise DatasetError(path, f"video is not in {self.meta_file}, so it has no predictions", video=vid)
            if video.frames != main.frames:
                raise DatasetError(path, f"frames differ from those in {self.meta_file} ({video.num_frames} vs "
                                   f"{main.num_frames}); predictions have one mask per frame of that file",
                                   video=vid, field="frames")
            for exp_id in video.expressions:
                if exp_id not in main.expressions:
                    raise DatasetError(path, f"expression {exp_id!r} is not in {self.meta_file}, so it has no "
                                       "predictions", video=vid, field=f"expressions.{exp_id}")
            if None not in (video.height, main.height) and (video.height, video.width) != (main.height, main.width):
                raise DatasetError(path, f"masks are {video.height}x{video.width} but those of {self.meta_file} "
                                   f"are {main.height}x{main.width}", video=vid, field="frames")

    def validate(self, *, check_frames: bool = True, decode_masks: bool = False) -> None:
        """Check cross-references, every RLE (``decode_masks``: decoded too) and frame files; DatasetError if wrong."""
        meta_path, mask_path = self.root / self.meta_file, self.root / self.mask_file
        owner: dict[int, str] = {}
        for vid, video in self.videos.items():
            anno_of_obj = {o.obj_id: o.anno_id for o in video.objects.values()}
            for obj in video.objects.values():
                if obj.anno_id in owner:
                    raise DatasetError(meta_path, f"anno_id {obj.anno_id} is used by two objects "
                                       f"(also in video {owner[obj.anno_id]!r})", video=vid,
                                       field=f"objects.{obj.obj_id}.anno_id")
                owner[obj.anno_id] = vid
            video_annos: set[int] = set()
            for exp in video.expressions.values():
                # Fields named as the file spells them: an official target is the subject/object's object.
                target = "subject/object.{}.object" if self.layout == "official" else "target_{}"
                for spelling, obj_ids, anno_ids in (("{}", exp.obj_ids, exp.anno_ids),
                                                    (target, exp.target_obj_ids, exp.target_anno_ids)):
                    f_obj = f"expressions.{exp.exp_id}.{spelling.format('obj_id')}"
                    f_anno = f"expressions.{exp.exp_id}.{spelling.format('anno_id')}"
                    _check_unique(meta_path, vid, f_obj, obj_ids)
                    _check_unique(meta_path, vid, f_anno, anno_ids)
                    if len(obj_ids) != len(anno_ids):
                        raise DatasetError(meta_path, f"{len(obj_ids)} obj_id but {len(anno_ids)} anno_id",
                                           video=vid, field=f_anno)
                    for o, a in zip(obj_ids, anno_ids):
                        if anno_of_obj and o not in anno_of_obj:
                            raise DatasetError(meta_path, f"unknown object id {o}", video=vid, field=f_obj)
                        if anno_of_obj and anno_of_obj[o] != a:
                            raise DatasetError(meta_path, f"obj_id {o} has anno_id {anno_of_obj[o]}, not {a}",
                                               video=vid, field=f_anno)
                        if a not in self.mask_dict:  # also when the file is {}: scoring would find no GT
                            raise DatasetError(meta_path, f"unknown anno_id {a}: no mask track in {self.mask_file}",
                                               video=vid, field=f_anno)
                        video_annos.add(a)
                overlap = set(exp.anno_ids) & set(exp.target_anno_ids)
                if overlap:
                    where = "subject/object.anno_id.object" if self.layout == "official" else "target_anno_id"
                    raise DatasetError(meta_path, f"objects {sorted(overlap)} are both actor and target",
                                       video=vid, field=f"expressions.{exp.exp_id}.{where}")
                if exp.official:
                    # Ids only the official form names (e.g. a bidirectional pair's object) need tracks too.
                    for a in off.all_anno_ids(off.core(exp.text, exp.fields, exp.official)):
                        if a not in self.mask_dict:
                            raise DatasetError(meta_path, f"unknown anno_id {a}: no mask track in {self.mask_file}",
                                               video=vid, field=f"expressions.{exp.exp_id}.subject/object.anno_id")
                        video_annos.add(a)
            for a in sorted(video_annos | {o.anno_id for o in video.objects.values()}):
                if a in self.mask_dict:
                    self._check_track(mask_path, video, a, decode_masks)
            if check_frames:
                self._check_frames(video)

    def _check_track(self, mask_path: Path, video: Video, anno: int, decode: bool) -> None:
        track = self.mask_dict[anno]
        if len(track) != video.num_frames:
            raise DatasetError(mask_path, f"mask track has {len(track)} entries but the video has "
                               f"{video.num_frames} frames", video=video.name, field=str(anno))
        for t, rle in enumerate(track):
            if rle is None:
                continue
            try:
                size = list(check_rle(rle))
            except ValueError as err:
                raise DatasetError(mask_path, f"frame {t} ({video.frames[t]}): RLE does not decode ({err})",
                                   video=video.name, field=str(anno)) from None
            if video.height is None:
                video.height, video.width = size
                video.size_inferred = True
            elif size != [video.height, video.width]:
                raise DatasetError(mask_path, f"frame {t} ({video.frames[t]}): RLE size {size} does not match "
                                   f"the video size [{video.height}, {video.width}]", video=video.name,
                                   field=str(anno))
            if not decode:
                continue
            # check_rle reads the runs as pycocotools does, so this cannot fail; it proves it on every frame at
            # ~2 ns a pixel, which is why only `data validate` pays for it.
            try:
                decode_rle(rle)
            except Exception as err:  # pycocotools raises bare ValueError/TypeError on corrupt counts
                raise DatasetError(mask_path, f"frame {t} ({video.frames[t]}): RLE does not decode ({err})",
                                   video=video.name, field=str(anno)) from None

    def _check_frames(self, video: Video) -> None:
        meta_path = self.root / self.meta_file
        if video.video_file is not None:
            try:
                path = self.video_path(video)
            except UnsafeName as err:
                raise DatasetError(meta_path, str(err), video=video.name, field="video_file") from None
            if not path.is_file():
                raise DatasetError(meta_path, f"video file {path} does not exist or is not a file", video=video.name,
                                   field="video_file")
            return
        try:
            folder = inside(self.root / FRAMES_DIR, video.name, what="video name")
        except UnsafeName as err:
            raise DatasetError(meta_path, str(err), video=video.name, field="frames") from None
        if not folder.is_dir():
            raise DatasetError(folder, "frame folder is missing", video=video.name, field="frames")
        # One listing, then the very lookup frame_path does: what validates is what the readers open.
        with os.scandir(folder) as entries:
            present = {e.name for e in entries if e.is_file()}
        missing = [f for f in video.frames if _frame_file(f, present.__contains__) is None]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise DatasetError(folder, f"{len(missing)} listed frame(s) missing: {shown} (looked for "
                               f"{'/'.join(FRAME_SUFFIXES)} files)", video=video.name, field="frames")
        for f in video.frames:
            try:
                inside(folder, _frame_file(f, present.__contains__), what="frame file")
            except UnsafeName as err:
                raise DatasetError(folder, str(err), video=video.name, field="frames") from None

    # ------------------------------------------------------------------ access
    def iter_expressions(self) -> Iterator[tuple[Video, Expression]]:
        """Every (video, expression) pair in file order."""
        for video in self.videos.values():
            for exp in video.expressions.values():
                yield video, exp

    def union_masks(self, video: Video, anno_ids: list[int]) -> np.ndarray:
        """The (T, H, W) bool union of the given objects' tracks; absent frames are empty."""
        h, w = self.frame_size(video)
        out = np.zeros((video.num_frames, h, w), dtype=bool)
        for a in anno_ids:
            for t, rle in enumerate(self.mask_dict[a]):
                if rle is not None:
                    out[t] |= decode_rle(rle)
        return out

    def object_masks(self, video: Video, obj_id: int) -> np.ndarray:
        """The (T, H, W) bool mask track of one object."""
        return self.union_masks(video, [video.objects[obj_id].anno_id])

    def frame_size(self, video: Video) -> tuple[int, int]:
        """(H, W) of a video, from the metadata, its masks, or its first frame."""
        if video.height is None:
            for anno in {a for e in video.expressions.values() for a in e.anno_ids + e.target_anno_ids}:
                first = next((r for r in self.mask_dict.get(anno, []) if r is not None), None)
                if first is not None:
                    video.height, video.width = map(int, first["size"])
                    break
            else:
                if not video.frames:
                    raise DatasetError(self.root / self.meta_file, "video has no frames, no height/width and no "
                                       "masks: its size is unknown", video=video.name, field="frames")
                h, w = self.read_frame(video, 0).shape[:2]
                video.height, video.width = h, w
            video.size_inferred = True
        return int(video.height), int(video.width)

    def frame_path(self, video: Video, frame: str) -> Path:
        """Frame file of a frame-folder video: the first FRAME_SUFFIXES match, else ``.jpg`` (one to be written)."""
        # Resolved inside JPEGImages (which may itself be a link): a name or link from the data cannot lead out.
        folder = inside(self.root / FRAMES_DIR, video.name, what="video name")
        check_component(frame, "frame name")
        name = _frame_file(frame, lambda n: (folder / n).is_file()) or frame + ".jpg"
        return inside(folder, name, what="frame file")

    def video_path(self, video: Video) -> Path:
        """The video file of a video-file video, resolved inside the split (``video_file`` is relative to it)."""
        return relative_inside(self.root, video.video_file, "video_file")

    def read_frame(self, video: Video, index: int) -> np.ndarray:
        """One RGB frame of a video, by position in its frame list."""
        if video.video_file is not None:
            path = self.video_path(video)
            frame = next(decode_video(path, start=index, stop=index + 1), None)
            if frame is None:
                raise VideoDecodeError(f"{path}: has no frame {index}")
            return frame
        return read_image(self.frame_path(video, video.frames[index]))

    def read_frames(self, video: Video, indices: list[int] | None = None) -> np.ndarray:
        """RGB frames (T, H, W, 3) of a video; all frames unless ``indices`` is given."""
        indices = list(range(video.num_frames)) if indices is None else list(indices)
        if video.video_file is not None:
            path = self.video_path(video)
            wanted = set(indices)
            got = {i: f for i, f in enumerate(decode_video(path, stop=max(indices) + 1)) if i in wanted}
            missing = [i for i in indices if i not in got]
            if missing:
                raise VideoDecodeError(f"{path}: frames {missing[:5]} could not be decoded")
            return np.stack([got[i] for i in indices])
        return np.stack([read_image(self.frame_path(video, video.frames[i])) for i in indices])

    def stats(self) -> dict[str, int]:
        """Counts of videos, frames, objects and expressions per type."""
        out = {"videos": len(self.videos), "frames": sum(v.num_frames for v in self.videos.values()),
               "objects": len(self.mask_dict), "expressions": 0}
        for t in ExpressionType:
            out[f"expressions_{t.value}"] = 0
        out["expressions_with_target"] = 0
        for _, e in self.iter_expressions():
            out["expressions"] += 1
            out[f"expressions_{e.type.value}"] += 1
            out["expressions_with_target"] += int(e.has_target)
        if self.role_split is not None:
            role = list(self.role_split.iter_expressions())
            out["role_expressions"] = len(role)
            out["role_expressions_with_target"] = sum(bool(e.object_anno_ids) for _, e in role)
        return out

    # ------------------------------------------------------------------ writing
    def save(self, root: str | os.PathLike | None = None, layout: str | None = None) -> Path:
        """Write the JSON files atomically in ``layout`` (default: the one read); frames are written by producers."""
        root = Path(root) if root is not None else self.root
        layout = layout or self.layout
        root.mkdir(parents=True, exist_ok=True)
        if self.role_split is not None:
            # Before the main pair: a folder whose meta file exists has its new_* pair already.
            self.role_split.save(root, layout)
        meta = {"videos": {name: v.to_json(layout) for name, v in self.videos.items()}}
        masks = {str(a): track for a, track in sorted(self.mask_dict.items())}
        # Masks first: a meta file that exists always points at masks that exist.
        atomic_write_text(root / self.mask_file, json.dumps(masks, separators=(",", ":")))
        atomic_write_text(root / self.meta_file, json.dumps(meta, indent=1))
        return root


# ---------------------------------------------------------------------- parsing helpers
def _frame_file(frame: str, exists: Callable[[str], bool]) -> str | None:
    """The file name of ``frame`` among FRAME_SUFFIXES for which ``exists(name)`` holds first, else None."""
    return next((frame + sfx for sfx in FRAME_SUFFIXES if exists(frame + sfx)), None)


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


class _DuplicateKey(Exception):
    pass


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise DatasetError(path, "file does not exist")
    if not path.is_file():
        raise DatasetError(path, "is not a regular file (a folder?)")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh, object_pairs_hook=_reject_duplicate_keys)
    except _DuplicateKey as dup:
        raise DatasetError(path, f"duplicate key {dup.args[0]!r} (JSON would silently keep only the last)",
                           field=dup.args[0]) from None
    except json.JSONDecodeError as err:
        raise DatasetError(path, f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except UnicodeDecodeError as err:
        raise DatasetError(path, f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); JSON "
                           "files must be UTF-8") from None
    except RecursionError:
        raise DatasetError(path, "JSON nested too deeply to read") from None
    except OSError as err:
        raise DatasetError(path, f"cannot be read ({err.strerror or err})") from None


def _layout(path: Path, raw_videos: dict[str, Any]) -> str:
    # One layout per file: the official loaders need the subject/object block on every expression.
    first: dict[str, tuple[str, str]] = {}
    for vid, v in raw_videos.items():
        for exp_id, e in v["expressions"].items():
            first.setdefault("official" if "subject/object" in e else "reviosa", (vid, exp_id))
    if len(first) == 2:
        (vid, exp_id), (o_vid, o_exp) = first["reviosa"], first["official"]
        raise DatasetError(path, f"expression has no 'subject/object' block, but expression {o_exp!r} of video "
                           f"{o_vid!r} has one: a file is either in the official layout or in the reviosa one",
                           video=vid, field=f"expressions.{exp_id}")
    return "official" if "official" in first else "reviosa"


def _check_unique(path: Path, vid: str, field_name: str, values: list[int]) -> None:
    seen = set()
    for v in values:
        if v in seen:
            raise DatasetError(path, f"duplicate id {v}", video=vid, field=field_name)
        seen.add(v)


def _int_list(path: Path, vid: str, field_name: str, value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]  # Ref-YouTube-VOS style single obj_id
    if not isinstance(value, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        raise DatasetError(path, f"expected a list of integers, got {value!r}", video=vid, field=field_name)
    return list(value)


_EXP_KEYS = {"exp", "obj_id", "anno_id", "type", "direction", "target_obj_id", "target_anno_id", "official"}
_VIDEO_KEYS = {"frames", "expressions", "objects", "height", "width", "video_file"}


def _safe_name(path: Path, vid: str, field_name: str, name: str, what: str) -> None:
    # Names become folders and files of every writer (predictions, annotations, overlays): refused here, once.
    try:
        check_component(name, what)
    except UnsafeName as err:
        raise DatasetError(path, str(err), video=vid, field=field_name) from None


def _parse_video(path: Path, vid: str, raw: Any) -> Video:
    _safe_name(path, vid, "videos", vid, "video name")
    if not isinstance(raw, dict):
        raise DatasetError(path, "video entry must be an object", video=vid)
    frames = raw.get("frames")
    if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
        raise DatasetError(path, "'frames' must be a list of frame names", video=vid, field="frames")
    for f in frames:
        _safe_name(path, vid, "frames", f, "frame name")
    if len(set(frames)) != len(frames):
        dup = next(f for i, f in enumerate(frames) if f in frames[:i])
        raise DatasetError(path, f"duplicate frame name {dup!r}", video=vid, field="frames")
    # Frames are used in sorted order (as the MeViS tooling does); mask lists index that order.
    if frames != sorted(frames):
        raise DatasetError(path, "frame names must be listed in sorted order", video=vid, field="frames")
    objects: dict[int, ObjectInfo] = {}
    if not isinstance(raw.get("objects") or {}, dict):
        raise DatasetError(path, "'objects' must be an object {obj_id: {anno_id, ...}}", video=vid, field="objects")
    for key, o in (raw.get("objects") or {}).items():
        try:
            oid = int(key)
        except ValueError:
            raise DatasetError(path, f"object id {key!r} is not an integer", video=vid, field="objects") from None
        if oid in objects:
            raise DatasetError(path, f"duplicate object id {oid}", video=vid, field="objects")
        if not isinstance(o, dict) or not isinstance(o.get("anno_id"), int) or isinstance(o["anno_id"], bool):
            raise DatasetError(path, "object needs an integer 'anno_id'", video=vid, field=f"objects.{key}")
        attrs = {k: v for k, v in o.items() if k not in ("anno_id", "category")}
        objects[oid] = ObjectInfo(oid, o["anno_id"], o.get("category"), attrs)
    exps_raw = raw.get("expressions")
    if not isinstance(exps_raw, dict):
        raise DatasetError(path, "'expressions' must be an object", video=vid, field="expressions")
    for k in exps_raw:
        _safe_name(path, vid, f"expressions.{k}", k, "expression id")
    expressions = {str(k): _parse_expression(path, vid, str(k), e) for k, e in exps_raw.items()}
    h, w = raw.get("height"), raw.get("width")
    if (h is None) != (w is None) or (h is not None and not all(
            isinstance(x, int) and not isinstance(x, bool) and 0 < x <= MAX_SIDE for x in (h, w))):
        raise DatasetError(path, f"height/width must both be integers from 1 to {MAX_SIDE}, got {h!r}/{w!r}",
                           video=vid, field="height")
    video_file = raw.get("video_file")
    if video_file is not None:
        # Relative to the split, every part a plain name: an absolute path or '..' would read any file.
        try:
            relative_inside(path.parent, video_file, "video_file")
        except UnsafeName as err:
            raise DatasetError(path, f"{err} (it is relative to the split folder)", video=vid,
                               field="video_file") from None
    extra = {k: v for k, v in raw.items() if k not in _VIDEO_KEYS}
    return Video(vid, frames, expressions, objects, h, w, video_file, extra)


def _expression_text(path: Path, vid: str, f: str, text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(path, "'exp' must be a non-empty string", video=vid, field=f + ".exp")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape: every report and CSV that quotes the text would fail
        raise DatasetError(path, f"'exp' {text!r} is not valid Unicode text", video=vid, field=f + ".exp") from None
    return text


def _parse_expression(path: Path, vid: str, exp_id: str, raw: Any) -> Expression:
    f = f"expressions.{exp_id}"
    if not isinstance(raw, dict):
        raise DatasetError(path, "expression must be an object", video=vid, field=f)
    if off.ROLES_KEY in raw:
        return _parse_official_expression(path, vid, exp_id, raw)
    for key in ("caption_type", "reviosa"):
        if key in raw:
            raise DatasetError(path, f"{key!r} belongs to the official layout, but the expression has no "
                               "'subject/object' block: its roles cannot be classified", video=vid, field=f"{f}.{key}")
    text = _expression_text(path, vid, f, raw.get("exp"))
    obj_ids = _int_list(path, vid, f + ".obj_id", raw.get("obj_id"))
    if "anno_id" not in raw:
        raise DatasetError(path, "missing 'anno_id' (the mask_dict keys of the referred objects)", video=vid,
                           field=f + ".anno_id")
    anno_ids = _int_list(path, vid, f + ".anno_id", raw["anno_id"])
    t_obj = _int_list(path, vid, f + ".target_obj_id", raw.get("target_obj_id"))
    t_anno = _int_list(path, vid, f + ".target_anno_id", raw.get("target_anno_id"))
    try:
        kind = ExpressionType(raw["type"]) if "type" in raw else (
            ExpressionType.INTERACTION if t_anno else
            ExpressionType.MULTI if len(anno_ids) > 1 else ExpressionType.SINGLE)
    except ValueError:
        raise DatasetError(path, f"unknown type {raw['type']!r} (single, multi, interaction)", video=vid,
                           field=f + ".type") from None
    direction = None
    if raw.get("direction") is not None:
        try:
            direction = Direction(raw["direction"])
        except ValueError:
            raise DatasetError(path, f"unknown direction {raw['direction']!r} (unidirectional, bidirectional)",
                               video=vid, field=f + ".direction") from None
    direction = _check_roles(path, vid, f, kind, direction, t_anno)
    extra = {k: v for k, v in raw.items() if k not in _EXP_KEYS}
    exp = Expression(exp_id, text, obj_ids, anno_ids, kind, direction, t_obj, t_anno, extra)
    if off.OFFICIAL_BLOCK in raw:
        _attach_official(path, vid, exp, raw[off.OFFICIAL_BLOCK])
    return exp


def _check_roles(path: Path, vid: str, f: str, kind: ExpressionType, direction: Direction | None,
                t_anno: list[int]) -> Direction | None:
    """Check that only unidirectional interactions have a target; return the direction (defaulted for interactions)."""
    if kind is ExpressionType.INTERACTION:
        direction = direction or (Direction.UNIDIRECTIONAL if t_anno else Direction.BIDIRECTIONAL)
        if direction is Direction.UNIDIRECTIONAL and not t_anno:
            raise DatasetError(path, "a unidirectional interaction needs target_anno_id", video=vid,
                               field=f + ".target_anno_id")
        if direction is Direction.BIDIRECTIONAL and t_anno:
            raise DatasetError(path, "a bidirectional interaction has no roles: put both objects in anno_id",
                               video=vid, field=f + ".target_anno_id")
    elif t_anno:
        raise DatasetError(path, f"only interaction expressions have a target (type is {kind.value!r})",
                           video=vid, field=f + ".target_anno_id")
    return direction


# ---------------------------------------------------------------------- the official layout (see reviosa.data.official)
def official_json(exp: Expression) -> dict[str, Any]:
    """The expression in the official layout, exactly as it was read if it was read from that layout."""
    return off.official_form(exp.text, exp.fields, exp.official, exp.extra)


def _parse_official_expression(path: Path, vid: str, exp_id: str, raw: dict[str, Any]) -> Expression:
    f = f"expressions.{exp_id}"
    mixed = sorted(set(raw) & off.REVIOSA_ONLY)
    if mixed:
        raise DatasetError(path, f"has the official 'subject/object' block and the reviosa field(s) {mixed}: one "
                           f"layout per expression (official files keep reviosa refinements in a "
                           f"{off.REVIOSA_BLOCK!r} block)", video=vid, field=f"{f}.{mixed[0]}")
    text = _expression_text(path, vid, f, raw.get("exp"))
    try:
        c = off.classify(raw)
    except off.ClassifyError as err:
        raise DatasetError(path, err.message, video=vid, field=f"{f}.{err.field}") from None
    kind, direction = ExpressionType(c.type), Direction(c.direction) if c.direction else None
    block = raw.get(off.REVIOSA_BLOCK)
    if block is not None:
        if not isinstance(block, dict) or set(block) - {"type", "direction"}:
            raise DatasetError(path, f"the {off.REVIOSA_BLOCK!r} block may only hold 'type' and 'direction'",
                               video=vid, field=f"{f}.{off.REVIOSA_BLOCK}")
        try:
            kind = ExpressionType(block["type"]) if "type" in block else kind
            if "direction" in block:
                direction = None if block["direction"] is None else Direction(block["direction"])
        except ValueError as err:
            raise DatasetError(path, str(err), video=vid, field=f"{f}.{off.REVIOSA_BLOCK}") from None
    direction = _check_roles(path, vid, f, kind, direction, c.target_anno_ids)
    extra = {k: v for k, v in raw.items() if k not in off.OFFICIAL_KEYS}
    exp = Expression(exp_id, text, c.obj_ids, c.anno_ids, kind, direction, c.target_obj_ids, c.target_anno_ids,
                     extra)
    exp.official = off.differences(raw, text, exp.fields)
    return exp


def _attach_official(path: Path, vid: str, exp: Expression, block: Any) -> None:
    """Keep a reviosa-layout ``official`` block after checking it names the same objects as the fields."""
    f = f"expressions.{exp.exp_id}.{off.OFFICIAL_BLOCK}"
    try:
        off.check_kept(block)
        form = off.core(exp.text, exp.fields, block)
        c = off.classify(form)
    except off.ClassifyError as err:
        raise DatasetError(path, err.message, video=vid, field=f"{f}.{err.field}".rstrip(".")) from None
    if not c.same_ids(exp.fields):
        raise DatasetError(path, f"names actor {c.anno_ids} and target {c.target_anno_ids}, but the expression's "
                           f"fields name actor {exp.anno_ids} and target {exp.target_anno_ids}", video=vid, field=f)
    exp.official = off.differences(form, exp.text, exp.fields)
