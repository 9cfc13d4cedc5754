"""Checkpoints that ship inside the package: the tiny ReVIOSa's pretrained base.

The real model starts from InternVL-2.5 and SAM2 weights that already ground language and segment objects. The tiny
model's stand-in is ``reviosa pretrain`` run once: its checkpoint ships here with the config and command that made
it and the SHA-256 of every file (``manifest.json``), and loads by name wherever a checkpoint path is accepted
(``ReviosaModel.from_pretrained("reviosa-tiny-base")``, ``reviosa train --set init_from=reviosa-tiny-base``). A
local folder of the same name wins, as with Hugging Face model ids.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from reviosa.data.atomic import replace_dir
from reviosa.model.errors import CheckpointError

SHIPPED_DIR = Path(__file__).parent
MANIFEST_FILE = "manifest.json"
#: names of the shipped checkpoints (each a folder beside this module)
NAMES = ("reviosa-tiny-base",)


def is_shipped(name: str | os.PathLike) -> bool:
    """True when ``name`` names a shipped checkpoint and no local folder of that name exists."""
    return isinstance(name, str) and name in NAMES and not Path(name).exists()


def resolve(path_or_name: str | os.PathLike) -> str | os.PathLike:
    """The folder of a shipped checkpoint named ``path_or_name`` (verified against its manifest); else unchanged."""
    if not is_shipped(path_or_name):
        return path_or_name
    verify(str(path_or_name))
    return str(SHIPPED_DIR / str(path_or_name))


def manifest(name: str) -> dict:
    """What ``manifest.json`` records for a shipped checkpoint: files and hashes, command, config, held-out numbers."""
    if name not in NAMES:
        raise CheckpointError(f"no shipped checkpoint {name!r}; shipped: {list(NAMES)}")
    path = SHIPPED_DIR / name / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; the shipped checkpoint {name!r} was not packaged with this install")
    return json.loads(path.read_text())


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files(root: Path) -> list[str]:
    """The files of a checkpoint folder, relative and sorted, its manifest left out."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)


def file_states(root: Path, want: dict[str, str], ignore: frozenset[str] = frozenset()) -> dict[str, str]:
    """Each file of ``root`` or of ``want`` (relative path -> SHA-256): equal, differs, missing or extra."""
    have = set(files(root)) - ignore
    states = {}
    for rel in sorted((set(want) - ignore) | have):
        if rel not in have:
            states[rel] = "missing"
        elif rel not in want:
            states[rel] = "extra"
        else:
            states[rel] = "equal" if sha256(root / rel) == want[rel] else "differs"
    return states


def verify(name: str) -> None:
    """Refuse a shipped checkpoint whose files differ from its manifest (changed, missing or extra)."""
    root, want = SHIPPED_DIR / name, manifest(name)["sha256"]
    states = file_states(root, want)
    if {"missing", "extra"} & set(states.values()):
        raise CheckpointError(f"{root}: files {files(root)} differ from the manifest's {sorted(want)}")
    for rel, state in states.items():
        if state == "differs":
            raise CheckpointError(f"{root / rel}: SHA-256 differs from {MANIFEST_FILE}; reinstall the package")


def ship(src: str | os.PathLike, name: str, command: str, record: dict) -> Path:
    """Copy a finished pretraining folder into the package as ``name``, with a manifest (hashes, command, record)."""
    src, dst = Path(src), SHIPPED_DIR / name
    tmp = Path(tempfile.mkdtemp(dir=SHIPPED_DIR, prefix=f".{name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; an installed package is read by everyone
    try:
        for rel in files(src):
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, tmp / rel)
        body = {"name": name, "command": command, "record": record,
                "sha256": {rel: sha256(tmp / rel) for rel in files(tmp)}}
        (tmp / MANIFEST_FILE).write_text(json.dumps(body, indent=1) + "\n")
        replace_dir(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
