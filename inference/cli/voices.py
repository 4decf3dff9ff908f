"""``vesper voices``: the voice library shared with the desktop app (add, list, remove, rename)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(commands: argparse._SubParsersAction) -> None:
    voices = commands.add_parser("voices", help="manage the voice library (named reference recordings)")
    actions = voices.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add a recording to the library under NAME")
    add.add_argument("name")
    add.add_argument("file", type=Path, help="the reference recording (WAV/FLAC/OGG, 5-15 s of speech)")
    add.add_argument("--text", help="what is said in the recording (improves cloning)")
    actions.add_parser("list", help="list the voices")
    remove = actions.add_parser("remove", help="delete a voice and its recording")
    remove.add_argument("name")
    rename = actions.add_parser("rename", help="rename a voice (projects keep their audio)")
    rename.add_argument("old")
    rename.add_argument("new")
    voices.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from inference.voice_library import VoiceLibrary

    library = VoiceLibrary()
    if args.action == "add":
        voice = library.add(args.name, args.file, args.text)
        print(f"Added voice '{voice.name}' ({voice.recording}).")
    elif args.action == "list":
        voices = library.list()
        for voice in voices:
            transcript = f"  \"{voice.transcript}\"" if voice.transcript else ""
            print(f"{voice.name}\t{voice.content_hash}{transcript}")
        if not voices:
            print(f"No voices yet in {library.root}: add one with 'vesper voices add NAME RECORDING'.")
    elif args.action == "remove":
        library.remove(args.name)
        print(f"Removed voice '{args.name}'.")
    else:
        library.rename(args.old, args.new)
        print(f"Renamed voice '{args.old}' to '{args.new}'.")
    return 0
