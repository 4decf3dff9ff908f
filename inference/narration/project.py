"""A narration project: a folder with a readable manifest and one FLAC file per generated chunk.

A chunk's file is named by its key, a hash of everything its audio depends on: the text the model is
given (after normalisation and the dictionary), the voice's content hash, the model and its
revision, the seed, the generation settings and the take. So editing the source, changing a
dictionary entry or re-recording a voice changes the keys of exactly the chunks it affects, and only
those are generated again; everything else is reused. Chunk files appear by an atomic rename, so a
file that exists is finished: a process killed at any moment leaves a project that resumes.

``project.json`` records what the narration was made from (source, voices, model, seed, settings,
plan) and, per chunk, its key and chosen take; ``--redo`` adds a take and chooses it, keeping the
old ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from inference import paths
from inference.errors import BadInputError
from inference.narration.script import Chunk, Script
from inference.output import atomic_output, write_json
from inference.voice_library import Voice

MANIFEST = "project.json"
CHUNKS = "chunks"
DICTIONARY = "dictionary.txt"  # the project's own pronunciation dictionary (a copy of --dictionary FILE)
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Generation:
    """What every chunk's audio depends on besides its text and voice."""

    model: str
    revision: str
    seed: int = 0
    settings: dict[str, str | int | float | bool] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"model": self.model, "revision": self.revision, "seed": self.seed, "settings": self.settings}


@dataclass(frozen=True)
class PlannedChunk:
    """One chunk of the book as the project plans it: where it sits, how it is keyed, where it lives."""

    number: int  # 1-based across the book: what --redo and the progress bar count
    chapter: int  # 0-based chapter index
    chunk: Chunk
    voice: Voice
    base_key: str  # the key of take 0: identifies the chunk's content across takes
    take: int
    key: str
    seed: int  # derived from the key, so a chunk's audio never depends on the batch it ran in

    @property
    def filename(self) -> str:
        return f"{self.key}.flac"


def chunk_key(text: str, voice_hash: str, generation: Generation, take: int = 0) -> str:
    fields = {"text": text, "voice": voice_hash, **generation.as_dict(), "take": take}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def seed_for(key: str) -> int:
    """A 31-bit seed from a chunk key (the key already holds the narration's seed and the take)."""
    return int(key[:8], 16) & 0x7FFFFFFF


def default_root(source: str) -> Path:
    """The project folder for an input: named from the file (``stdin`` for standard input)."""
    stem = "stdin" if source == "-" else Path(source).stem
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "narration"
    return paths.projects_dir() / slug


def model_revision(model: str) -> str:
    """What identifies the model's weights without loading them (torch-free).

    A folder: its config and the sizes of its weight files. A hub id: the commit the local Hugging Face
    cache resolves ``main`` to. A registered name is pinned by the registry, so its name is enough.
    """
    folder = Path(model).expanduser()
    if folder.is_dir():
        digest = hashlib.sha256()
        for item in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")):
            digest.update(item.name.encode())
            digest.update(item.read_bytes() if item.suffix == ".json" else str(item.stat().st_size).encode())
        return f"folder:{digest.hexdigest()[:16]}"
    if model.count("/") == 1:
        from huggingface_hub import constants

        ref = Path(constants.HF_HUB_CACHE) / f"models--{model.replace('/', '--')}" / "refs" / "main"
        return ref.read_text().strip() if ref.is_file() else "main"
    return "registered"


class Project:
    """A project folder; ``plan`` maps a Script onto keyed chunk files, the runner fills them in."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.chunks_dir = self.root / CHUNKS
        self.manifest_path = self.root / MANIFEST

    def open(self) -> Project:
        """Create the folder if needed; a path that is a file or unwritable gets one clear line."""
        try:
            self.chunks_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInputError(f"Cannot use {self.root} as a project folder: {exc.strerror}.") from exc
        if not os.access(self.chunks_dir, os.W_OK):
            raise BadInputError(f"Cannot use {self.root} as a project folder: it is not writable.")
        return self

    def manifest(self) -> dict:
        try:
            return json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (FileNotFoundError, NotADirectoryError):  # a new project (a bad folder is refused by open())
            return {}
        except ValueError as exc:
            raise BadInputError(f"The project manifest {self.manifest_path} is damaged ({exc}); "
                                "move it away to start the project afresh (finished chunks are kept).") from exc

    def takes(self) -> dict[str, dict[str, int]]:
        """Per chunk content (base key): the chosen take and how many takes exist."""
        return self.manifest().get("takes", {})

    def plan(self, script: Script, voices: dict[str | None, Voice], generation: Generation) -> list[PlannedChunk]:
        """Every chunk of ``script`` keyed for this project; ``voices[None]`` is the narration's voice."""
        takes = self.takes()
        planned: list[PlannedChunk] = []
        for chapter_index, chapter in enumerate(script.chapters):
            for chunk in chapter.chunks:
                voice = voices[chunk.voice]
                base = chunk_key(chunk.text, voice.content_hash, generation)
                take = takes.get(base, {}).get("chosen", 0)
                key = chunk_key(chunk.text, voice.content_hash, generation, take) if take else base
                planned.append(PlannedChunk(len(planned) + 1, chapter_index, chunk, voice, base, take, key,
                                            seed_for(key)))
        return planned

    def redo(self, planned: Sequence[PlannedChunk], numbers: Iterable[int],
             generation: Generation) -> list[PlannedChunk]:
        """Choose a new take for chunks ``numbers`` (1-based; others are ignored); the plan to use from now on."""
        wanted = set(numbers)
        manifest = self.manifest()
        takes = manifest.setdefault("takes", {})
        out = []
        for item in planned:
            if item.number in wanted:
                record = takes.setdefault(item.base_key, {"chosen": 0, "takes": 1})
                record["chosen"], record["takes"] = record["takes"], record["takes"] + 1
                item = self.with_take(item, record["chosen"], generation)
            out.append(item)
        self._write_manifest(manifest)
        return out

    def with_take(self, item: PlannedChunk, take: int, generation: Generation) -> PlannedChunk:
        """``item`` keyed as its take ``take`` (0: the first), e.g. to hear a take that is not chosen."""
        key = chunk_key(item.chunk.text, item.voice.content_hash, generation, take) if take else item.base_key
        return PlannedChunk(item.number, item.chapter, item.chunk, item.voice, item.base_key, take, key, seed_for(key))

    def choose(self, item: PlannedChunk, take: int) -> None:
        """Make take ``take`` (0-based, one already made) the one ``item``'s chunk uses from now on."""
        manifest = self.manifest()
        record = manifest.setdefault("takes", {}).setdefault(item.base_key, {"chosen": 0, "takes": 1})
        if not 0 <= take < record["takes"]:
            raise BadInputError(f"Chunk {item.number} has {record['takes']} takes; choose one of them.")
        record["chosen"] = take
        self._write_manifest(manifest)

    @property
    def dictionary_path(self) -> Path:
        return self.root / DICTIONARY

    def keep_dictionary(self, source: Path) -> None:
        """Make ``source`` the project's own dictionary (a copy: later runs use it without ``--dictionary``)."""
        if source.resolve() == self.dictionary_path.resolve():
            return
        with atomic_output(self.dictionary_path) as partial:
            partial.write_bytes(source.read_bytes())

    def path(self, item: PlannedChunk) -> Path:
        return self.chunks_dir / item.filename

    def is_done(self, item: PlannedChunk) -> bool:
        return self.path(item).is_file()

    def write_chunk(self, item: PlannedChunk, audio: np.ndarray, rate: int) -> None:
        """Atomically: the file appears complete or not at all."""
        with atomic_output(self.path(item)) as partial:
            sf.write(partial, np.clip(audio, -1.0, 1.0), rate, format="FLAC", subtype="PCM_24")

    def sample_rate(self, item: PlannedChunk) -> int:
        """The rate of ``item``'s file (read from its header)."""
        return int(sf.info(self.path(item)).samplerate)

    def read_chunk(self, item: PlannedChunk) -> tuple[np.ndarray, int]:
        audio, rate = sf.read(self.path(item), dtype="float32")
        return audio, int(rate)

    def record(self, script: Script, source: str, planned: Sequence[PlannedChunk], generation: Generation,
               extra: dict) -> None:
        """Write the manifest: what this narration is made of, readable by a person."""
        manifest = self.manifest()
        voices = {p.voice.name: {"content_hash": p.voice.content_hash, "recording": str(p.voice.recording)}
                  for p in planned}
        manifest.update({
            "format": FORMAT_VERSION, "source": source, "title": script.title, "author": script.author,
            **generation.as_dict(), "voices": voices, **extra,
            "chapters": [{"title": ch.title, "chunks": [p.number for p in planned if p.chapter == i]}
                         for i, ch in enumerate(script.chapters)],
            "chunks": [{"number": p.number, "chapter": p.chapter, "voice": p.voice.name, "text": p.chunk.text,
                        "key": p.key, "take": p.take, "file": f"{CHUNKS}/{p.filename}"} for p in planned],
        })
        manifest.setdefault("takes", {})
        self._write_manifest(manifest)

    def _write_manifest(self, manifest: dict) -> None:
        write_json(self.manifest_path, manifest)


def parse_chunk_numbers(spec: str) -> list[int]:
    """``"3,7-9"`` -> [3, 7, 8, 9]; anything else is one clear line."""
    numbers: list[int] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None or (match[2] and int(match[2]) < int(match[1])):
            raise BadInputError(f"--redo takes chunk numbers such as 3,7-9; '{part}' is not one.")
        numbers.extend(range(int(match[1]), int(match[2] or match[1]) + 1))
    return numbers
