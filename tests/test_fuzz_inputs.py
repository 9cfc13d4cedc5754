"""A bounded, seeded fuzz of the file inputs of the CLI: corrupt splits and predictions, run the real commands.

Every mutated input goes through ``reviosa data validate``, ``data stats``, ``baseline`` and ``evaluate`` (typer's
CliRunner, in process; nothing here opens a socket). For a client mistake each command must exit 1 or 2 with one
line on stderr and no exception; nothing may change under the temp root outside the output folder (a snapshot is
compared before and after every input); and an input that validates must still predict and score. The counts are
printed as one summary line (``pytest -s``). ``REVIOSA_FUZZ_SEED`` / ``REVIOSA_FUZZ_CASES`` run other or longer
campaigns locally; CI runs the default, about a minute on 2 cores.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import struct
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest
from _splits import make_split
from typer.testing import CliRunner

from reviosa.cli import app

SEED = int(os.environ.get("REVIOSA_FUZZ_SEED", "20260607"))
SPLIT_CASES = int(os.environ.get("REVIOSA_FUZZ_CASES", "200"))
PREDICTION_CASES = max(1, SPLIT_CASES // 4)
#: one accepted input in this many is also scored (evaluate draws a histogram: ~1 s each on 2 cores)
EVALUATE_EVERY = 8

runner = CliRunner()
ESCAPE = Path(f"/tmp/reviosa-fuzz-escape-{os.getpid()}")


def _names(tmp: Path) -> list[Any]:
    """Names an attacker or a broken tool might put where a video, expression or frame name goes."""
    climb = "../" * 40
    return ["..", ".", "", "a/b", "../../escaped", climb + str(tmp / "escaped").lstrip("/"),
            climb + str(ESCAPE).lstrip("/"), "/abs", "x\\y", "nul\0", "\ud800", "a" * 250, 7, None,
            "ok name", "ünïcode", "00000.jpg"]


VALUES: list[Any] = [None, True, False, 0, -1, 1, 2 ** 31, 10 ** 20, 1.5, float("inf"), "", "x", "0", [], {}, [1, 2],
                     [[]], {"a": 1}, "\ud800", "a" * 300, [None], {"size": [24, 32], "counts": ""}]


# ---------------------------------------------------------------------- JSON-level mutators
def _nodes(doc: Any, path: tuple = ()) -> list[tuple]:
    """Every path into a JSON document (dict keys and list indices)."""
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _nodes(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _nodes(v, path + (i,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _rename(container: dict, old: Any, new: Any) -> None:
    """Rename a key in place, keeping the order (and any duplicate the JSON writer then refuses)."""
    items = list(container.items())
    container.clear()
    for k, v in items:
        container[new if k == old else k] = v


class Case:
    """One mutated input: the split's two JSON documents (or raw bytes) and what was done to them."""

    def __init__(self, meta: Any, masks: Any):
        self.meta, self.masks = meta, masks
        self.raw: dict[str, bytes | None] = {}
        self.file_ops: list[Callable[[Path], None]] = []
        self.kind = ""
        self.reads_frames = False  # run the baseline that decodes frames (largest-moving)
        self.frames_corrupt = False  # frame bytes are garbage: validation (which only lists them) may accept

    def doc(self, rng: random.Random) -> str:
        return rng.choice(["meta", "masks"])


def m_set(case: Case, rng: random.Random, tmp: Path) -> None:
    which = case.doc(rng)
    doc = getattr(case, which)
    path = rng.choice(_nodes(doc))
    setattr(case, which, _set(doc, path, copy.deepcopy(rng.choice(VALUES))))
    case.kind = f"set {which}"


def m_delete(case: Case, rng: random.Random, tmp: Path) -> None:
    which = case.doc(rng)
    doc = getattr(case, which)
    paths = [p for p in _nodes(doc) if p]
    if paths:
        p = rng.choice(paths)
        del _get(doc, p[:-1])[p[-1]]
    case.kind = f"delete {which}"


def m_rename_key(case: Case, rng: random.Random, tmp: Path) -> None:
    which = case.doc(rng)
    doc = getattr(case, which)
    dicts = [p for p in _nodes(doc) if isinstance(_get(doc, p), dict) and _get(doc, p)]
    parent = _get(doc, rng.choice(dicts))
    new = rng.choice([n for n in _names(tmp) if isinstance(n, str)] + ["-1", "1.5", " 10", "1_0", "videos"])
    _rename(parent, rng.choice(list(parent)), new)
    case.kind = f"rename key {which}"


def _rles(masks: Any) -> list[tuple]:
    return [p for p in _nodes(masks) if len(p) == 2 and isinstance(_get(masks, p), dict)]


def m_rle(case: Case, rng: random.Random, tmp: Path) -> None:
    paths = _rles(case.masks) if isinstance(case.masks, dict) else []
    if not paths:
        return m_set(case, rng, tmp)
    rle = _get(case.masks, rng.choice(paths))
    counts = rle.get("counts", "")
    choice = rng.randrange(9)
    if choice == 0 and isinstance(counts, str) and counts:
        i = rng.randrange(len(counts))
        rle["counts"] = counts[:i] + chr(rng.randrange(32, 127)) + counts[i + 1:]
    elif choice == 1 and isinstance(counts, str):
        rle["counts"] = counts[: rng.randrange(len(counts) + 1)]
    elif choice == 2:
        rle["counts"] = str(counts) + "".join(chr(rng.randrange(48, 112)) for _ in range(rng.randrange(1, 6)))
    elif choice == 3:
        rle["counts"] = rng.choice([5, None, [], [768], [-5, 773], [1.5], [True], "\u00ff", "0" * 10 ** 4,
                                    [768] + [0] * 3, ["768"]])
    elif choice == 4:
        rle["size"] = rng.choice([128, [24], [24, 32, 1], [0, 32], [-1, 32], [32, 24], [10 ** 6, 10 ** 6],
                                  ["24", "32"], [24.0, 32.0], None, True, [True, 32], [2 ** 70, 1]])
    elif choice == 5:
        del rle[rng.choice(["size", "counts"])]
    elif choice == 6:
        p = rng.choice(paths)
        _set(case.masks, p, rng.choice([[], "rle", 0, [rle]]))
    elif choice == 7:
        track = case.masks[rng.choice(list(case.masks))]
        if isinstance(track, list):
            rng.choice([lambda: track.pop(), lambda: track.append(None), lambda: track.insert(0, copy.deepcopy(rle))])()
    else:
        rle["counts"] = "".join(chr(rng.randrange(48, 112)) for _ in range(rng.randrange(1, 20)))
    case.kind = "rle"


def m_name(case: Case, rng: random.Random, tmp: Path) -> None:
    videos = case.meta["videos"]
    vid = rng.choice(list(videos))
    new = rng.choice(_names(tmp))
    where = rng.randrange(4)
    if where == 0 and isinstance(new, str):
        _rename(videos, vid, new)
        case.kind = "video name"
    elif where == 1 and isinstance(new, str):
        exps = videos[vid]["expressions"]
        _rename(exps, rng.choice(list(exps)), new)
        case.kind = "expression id"
    elif where == 2:
        frames = videos[vid]["frames"]
        frames[rng.randrange(len(frames))] = new
        case.kind = "frame name"
    else:
        videos[vid]["video_file"] = rng.choice(["/etc/passwd", "../outside.mp4", "clip.mp4", "JPEGImages",
                                                "meta_expressions.json", 5, "a//b", "JPEGImages/../x", ""])
        case.reads_frames = True
        case.frames_corrupt = True  # an existing file that is no video passes validation; decoding it fails
        case.kind = "video_file"


def m_size(case: Case, rng: random.Random, tmp: Path) -> None:
    video = case.meta["videos"][rng.choice(list(case.meta["videos"]))]
    for key in rng.sample(["height", "width"], rng.randint(1, 2)):
        video[key] = rng.choice([None, 0, -24, 24, 32, 25, 10 ** 6, 16384, 16385, True, "24", 24.0, [24]])
    case.kind = "size"


def m_bytes(case: Case, rng: random.Random, tmp: Path) -> None:
    name = rng.choice(["meta_expressions.json", "mask_dict.json"])
    text = json.dumps(case.meta if name.startswith("meta") else case.masks).encode()
    choice = rng.randrange(7)
    if choice == 0:
        data = text[: rng.randrange(len(text))]
    elif choice == 1:
        i = rng.randrange(len(text))
        data = text[:i] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8))) + text[i:]
    elif choice == 2:
        data = text.replace(b"the", "th\u00e9".encode("latin-1"), 1) if b"the" in text else b"\xff\xfe{}"
    elif choice == 3:
        data = b"[" * 200_000 + b"]" * 200_000
    elif choice == 4:
        data = text.replace(b'"vid_b"', b'"vid_a"', 1).replace(b'"11"', b'"10"', 1)  # duplicate keys
    elif choice == 5:
        data = rng.choice([b"", b"null", b"[]", b'{"videos": []}', b"1e400", b'{"videos": {"v": null}}'])
    else:
        data = None  # the file is missing, or a folder
        if rng.random() < 0.5:
            case.file_ops.append(lambda split, n=name: (split / n).mkdir())
    case.raw[name] = data
    case.kind = f"bytes {name}"


def m_frames(case: Case, rng: random.Random, tmp: Path) -> None:
    vid = rng.choice(["vid_a", "vid_b"])
    frame = rng.choice(case.meta["videos"][vid]["frames"])
    choice = rng.randrange(7)

    def op(split: Path) -> None:
        folder = split / "JPEGImages" / vid
        f = folder / f"{frame}.jpg"
        if choice == 0:
            f.unlink()
        elif choice == 1:
            f.rename(f.with_suffix(rng.choice([".png", ".JPG", ".jpeg", ".Jpg", ".gif"])))
        elif choice == 2:
            f.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64))))
        elif choice == 3:
            f.unlink()
            f.symlink_to("/etc/passwd")
        elif choice == 4:
            f.unlink()
            f.mkdir()
        elif choice == 5:
            shutil.move(str(folder), str(split.parent / "moved"))
            folder.symlink_to(split.parent / "moved", target_is_directory=True)
        else:
            shutil.rmtree(folder)

    case.file_ops.append(op)
    case.reads_frames = True
    case.frames_corrupt = choice == 2
    case.kind = "frames"


def m_benign(case: Case, rng: random.Random, tmp: Path) -> None:
    """Changes a valid split survives (or should): text, labels, extra fields, equivalent masks, safe renames."""
    videos = case.meta["videos"]
    vid = rng.choice(list(videos))
    video = videos[vid]
    exp = video["expressions"][rng.choice(list(video["expressions"]))]
    choice = rng.randrange(8)
    if choice == 0:
        exp["exp"] = rng.choice(["ünïcode ✓ text", "a" * 5000, "line\nbreak", '"quoted", with comma', "\ud800",
                                 " ", "tab\tseparated"])
    elif choice == 1:
        obj = video["objects"][rng.choice(list(video["objects"]))]
        obj[rng.choice(["category", "color", "note"])] = copy.deepcopy(rng.choice(VALUES))
    elif choice == 2:
        video[rng.choice(["extra", "fps", "source"])] = copy.deepcopy(rng.choice(VALUES))
        exp[rng.choice(["note", "source", "level"])] = copy.deepcopy(rng.choice(VALUES))
    elif choice == 3:  # an absent object on one frame
        track = case.masks[str(rng.choice(exp["anno_id"] or [10]))]
        track[rng.randrange(len(track))] = None
    elif choice == 4:  # the same mask as an uncompressed RLE
        from reviosa.data.rle import decode_rle

        track = case.masks[rng.choice(list(case.masks))]
        t = rng.randrange(len(track))
        if track[t] is not None:
            flat = decode_rle(track[t]).T.ravel()
            edges = [0] + [i for i in range(1, flat.size) if flat[i] != flat[i - 1]] + [flat.size]
            runs = [b - a for a, b in zip(edges, edges[1:])]
            track[t] = {"size": track[t]["size"], "counts": ([0] if flat[0] else []) + runs}
    elif choice == 5:  # a new, safe video name (its frame folder follows)
        new = rng.choice(["ok name", "ünïcode", "v.1", "-dash"])
        _rename(videos, vid, new)
        def move(split: Path, old: str = vid, new: str = new) -> None:
            src, dst = split / "JPEGImages" / old, split / "JPEGImages" / new
            if src.exists() and not dst.exists():  # an earlier mutation may have moved either already
                src.rename(dst)

        case.file_ops.append(move)
    elif choice == 6:
        video.pop("height", None), video.pop("width", None)  # the size comes from the masks then
    else:
        case.masks["999"] = [None]  # a track no object uses
    case.kind = case.kind or f"benign {choice}"


MUTATORS = [(m_set, 3), (m_delete, 2), (m_rename_key, 2), (m_rle, 5), (m_name, 4), (m_size, 2), (m_bytes, 2),
            (m_frames, 2), (m_benign, 10)]


# ---------------------------------------------------------------------- running and checking
def _snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """Every entry under ``root`` but ``skip``: kind, size and mtime (links are not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in dirnames + filenames:
            st = (here / name).lstat()
            out[str((here / name).relative_to(root))] = (st.st_mode, st.st_size,
                                                         None if (here / name).is_dir() else st.st_mtime_ns)
    return out


class Tally:
    def __init__(self):
        self.counts: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()

    def run(self, args: list[str], what: str) -> int:
        """Run one command; a failure must be a clean exit 1/2 with one stderr line. Returns the exit code."""
        start = time.perf_counter()
        res = runner.invoke(app, args)
        self.seconds[" ".join(args[:2]) if args[0] == "data" else args[0]] += time.perf_counter() - start
        where = f"{what}: reviosa {' '.join(args)}"
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            import traceback

            tb = "".join(traceback.format_exception(res.exception))
            raise AssertionError(f"{where} raised {type(res.exception).__name__}: {res.exception}\n{tb}")
        assert res.exit_code in (0, 1, 2), (where, res.exit_code, res.output)
        assert "Traceback" not in res.output, (where, res.output)
        if res.exit_code:
            lines = [line for line in res.stderr.splitlines() if line.strip()]
            assert len(lines) == 1, (where, res.stderr)
        command = " ".join(args[:2]) if args[0] == "data" else args[0]
        self.counts[f"{command} {'rejected' if res.exit_code else 'ok'}"] += 1
        return res.exit_code


def _write_case(case: Case, base: Path, split: Path) -> None:
    shutil.rmtree(split, ignore_errors=True)
    shutil.rmtree(split.parent / "moved", ignore_errors=True)
    shutil.copytree(base, split, symlinks=True)
    for name, doc in (("meta_expressions.json", case.meta), ("mask_dict.json", case.masks)):
        if name in case.raw:
            data = case.raw[name]
            if data is None:
                (split / name).unlink()
            else:
                (split / name).write_bytes(data)
        else:
            (split / name).write_text(json.dumps(doc))
    for op in case.file_ops:
        op(split)


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def _mutate_predictions(rng: random.Random, pred: Path, official: Path, tmp: Path) -> tuple[Path, str]:
    """Corrupt a copy of the oracle's predictions (PNG folder or results.json); returns what evaluate reads."""
    if rng.random() < 0.5:
        pngs = sorted(pred.rglob("*.png"))
        f = rng.choice(pngs)
        choice = rng.randrange(7)
        if choice == 0:
            f.write_bytes(f.read_bytes()[: rng.randrange(40)])
        elif choice == 1:
            f.write_bytes(_png_header(15000, 15000))
        elif choice == 2:
            f.write_bytes(_png_header(32, 24))  # right size, no pixels
        elif choice == 3:
            f.write_bytes(bytes(rng.randrange(256) for _ in range(64)))
        elif choice == 4:
            f.unlink()
            f.mkdir()
        elif choice == 5:
            f.unlink()  # a missing frame: scored as empty, not an error
        else:
            role = f.parent
            shutil.move(str(role), str(tmp / "moved-role"))
            role.symlink_to(tmp / "moved-role", target_is_directory=True)
        return pred, f"png {choice}"
    doc = json.loads(official.read_text())
    entry = doc[rng.choice(list(doc))]
    entry = entry[rng.choice(list(entry))]
    choice = rng.randrange(5)
    if choice == 0:
        key = rng.choice(["prediction_masks_act", "prediction_masks_tar", "frames"])
        entry[key] = copy.deepcopy(rng.choice(VALUES))
    elif choice == 1:
        rles = entry["prediction_masks_act"]
        rle = rles[rng.randrange(len(rles))]
        if rng.random() < 0.5:
            rle["size"] = rng.choice([128, [24], ["24", "32"], [10 ** 6, 10 ** 6], None])
        else:
            rle["counts"] = rng.choice(["", "0", "zz", 5, [768, 1], rle["counts"][:-1]])
    elif choice == 2:
        doc = rng.choice([[], None, {"vid_a": []}, {"vid_a": {"0": 5}}])
    elif choice == 3:
        official.write_bytes(official.read_bytes()[: rng.randrange(200)])
        return official, "results.json truncated"
    else:
        entry["frames"] = entry["frames"][:-1]
    official.write_text(json.dumps(doc))
    return official, f"results.json {choice}"


@pytest.mark.timeout(300)
def test_fuzzed_inputs_fail_cleanly_and_stay_inside(tmp_path: Path) -> None:
    start = time.perf_counter()
    rng = random.Random(SEED)
    base = tmp_path / "base"
    make_split(base)
    (tmp_path / "outside.mp4").write_bytes(b"not a video")
    meta = json.loads((base / "meta_expressions.json").read_text())
    masks = json.loads((base / "mask_dict.json").read_text())
    split, out = tmp_path / "case", tmp_path / "out"
    tally = Tally()
    accepted = rejected = scored = 0
    mutators = [m for m, w in MUTATORS for _ in range(w)]
    for i in range(SPLIT_CASES + 1):
        case = Case(copy.deepcopy(meta), copy.deepcopy(masks))
        if i:  # case 0 is the untouched split: it must pass every command
            for _ in range(rng.choice([1, 1, 1, 2])):
                try:
                    rng.choice(mutators)(case, rng, tmp_path)
                except (KeyError, TypeError, AttributeError, IndexError):
                    pass  # an earlier mutation broke the shape a later one expected: the input stays as it is
        _write_case(case, base, split)
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        before = _snapshot(tmp_path, out)
        label = f"case {i} ({case.kind or 'untouched'}, seed {SEED})"
        ok = tally.run(["data", "validate", str(split)], label) == 0
        stats_ok = tally.run(["data", "stats", str(split)], label) == 0
        baseline = "largest-moving" if case.reads_frames else "oracle"
        made = tally.run(["baseline", baseline, "--data", str(split), "--out", str(out / "pred"), "--workers", "1"],
                         label) == 0
        if ok:
            accepted += 1
            assert stats_ok, label
            # A split that validates must still predict (garbage frame bytes are only found when decoded).
            assert made or case.frames_corrupt, label
        else:
            rejected += 1
            tally.kinds[case.kind or "untouched"] += 1
        if not ok or (made and accepted % EVALUATE_EVERY == 1):
            pred = out / "pred" if made else out
            code = tally.run(["evaluate", "--data", str(split), "--predictions", str(pred), "--out",
                              str(out / "eval"), "--workers", "1", "--no-progress"], label)
            assert code == 0 or not ok, label
            scored += code == 0
        assert _snapshot(tmp_path, out) == before, f"{label} changed files outside {out}"
        assert not (tmp_path / "escaped").exists() and not ESCAPE.exists(), label

    # Predictions: the oracle's, corrupted, scored against the untouched split.
    _write_case(Case(meta, masks), base, split)
    clean = tmp_path / "clean"
    assert tally.run(["baseline", "oracle", "--data", str(split), "--out", str(clean / "pred"), "--workers", "1"],
                     "oracle") == 0
    assert tally.run(["baseline", "oracle", "--data", str(split), "--out", str(clean / "results.json"), "--format",
                      "official", "--workers", "1"], "oracle") == 0
    pred_rejected = 0
    for i in range(PREDICTION_CASES):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(clean, out, symlinks=True)
        shutil.rmtree(tmp_path / "moved-role", ignore_errors=True)
        target, kind = _mutate_predictions(rng, out / "pred", out / "results.json", out)
        before = _snapshot(tmp_path, out)
        code = tally.run(["evaluate", "--data", str(split), "--predictions", str(target), "--out", str(out / "eval"),
                          "--workers", "1", "--no-progress"], f"prediction case {i} ({kind}, seed {SEED})")
        pred_rejected += code != 0
        assert _snapshot(tmp_path, out) == before, f"prediction case {i} ({kind}) changed files outside {out}"

    took = time.perf_counter() - start
    tried = SPLIT_CASES + 1 + PREDICTION_CASES
    print(f"\nfuzz (seed {SEED}): {tried} inputs tried in {took:.0f} s: {SPLIT_CASES + 1} splits "
          f"({rejected} rejected cleanly, {accepted} accepted, {scored} of those scored), {PREDICTION_CASES} "
          f"predictions ({pred_rejected} rejected cleanly, {PREDICTION_CASES - pred_rejected} scored); "
          f"commands: {dict(sorted(tally.counts.items()))}; seconds in them: "
          f"{ {k: round(v, 1) for k, v in sorted(tally.seconds.items())} }; rejected splits by mutation: "
          f"{dict(tally.kinds.most_common())}")
    # Both sides of the line must be exercised, or the fuzz tests nothing.
    assert rejected > SPLIT_CASES // 3 and accepted > 10 and pred_rejected > PREDICTION_CASES // 3
