"""A Hugging Face Hub on loopback for first-run tests: real files served the way the Hub API serves them.

It answers what ``huggingface_hub``'s ``snapshot_download`` and ``hf_hub_download`` ask (installed
version 2.x; read from their source): model info (``sha``, ``siblings``), at a revision or not, the recursive
tree listing, and HEAD/GET of ``/{repo}/resolve/{revision}/{file}`` with ``ETag``, ``X-Repo-Commit`` and
``Content-Length``; missing repos and files get the ``X-Error-Code`` the client turns into its own
errors. Plain HTTP only (no Xet: ``HF_HUB_DISABLE_XET=1``). ``throttle`` slows one file down to a trickle
so a test can cancel while it is partly downloaded. Bound to 127.0.0.1 on an ephemeral port.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

from inference.adapters.pocket_tts import CODEC, CODEC_HUB_ID

POCKET_HUB_ID = "eustlb/pocket-tts"


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str = ""

    def __post_init__(self) -> None:
        digest = hashlib.sha1()
        for path in sorted(self.files):
            digest.update(path.encode() + b"\0" + hashlib.sha1(self.files[path]).digest())
        self.sha = digest.hexdigest()


@dataclass
class LocalHub:
    repos: dict[str, Repo]
    throttle: tuple[str, str] | None = None  # (repo, file) sent in small slow pieces
    requests: list[str] = field(default_factory=list)  # "METHOD path", for assertions
    _server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LocalHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                hub._answer(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._answer(self, body=True)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlparse(handler.path).path)
        self.requests.append(f"{handler.command} {path}")
        parts = path.strip("/").split("/")
        try:
            if parts[:2] == ["api", "models"] and (len(parts) == 4 or len(parts) >= 6 and parts[4] == "revision"):
                repo_id = "/".join(parts[2:4])
                repo = self._repo(handler, repo_id)
                if repo is not None:
                    siblings = [{"rfilename": name} for name in sorted(repo.files)]
                    self._json(handler, {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False,
                                         "siblings": siblings}, body)
            elif parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
                repo = self._repo(handler, "/".join(parts[2:4]))
                if repo is not None:
                    self._json(handler, [{"type": "file", "path": name, "size": len(data),
                                          "oid": hashlib.sha1(data).hexdigest()}
                                         for name, data in sorted(repo.files.items())], body)
            elif len(parts) >= 5 and parts[2] == "resolve":
                self._file(handler, "/".join(parts[:2]), "/".join(parts[4:]), body)
            else:
                self._error(handler, 404, "")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up (a cancelled download)

    def _repo(self, handler: BaseHTTPRequestHandler, repo_id: str) -> Repo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self._error(handler, 404, "RepoNotFound")
        return repo

    def _file(self, handler: BaseHTTPRequestHandler, repo_id: str, name: str, body: bool) -> None:
        repo = self._repo(handler, repo_id)
        if repo is None:
            return
        data = repo.files.get(name)
        if data is None:
            self._error(handler, 404, "EntryNotFound", repo.sha)
            return
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        handler.send_header("X-Repo-Commit", repo.sha)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.end_headers()
        if not body:
            return
        if self.throttle != (repo_id, name):
            handler.wfile.write(data)
            return
        piece = 256 * 1024
        for start in range(0, len(data), piece):  # about 2.5 MB/s: seconds for a file over 10 MB
            handler.wfile.write(data[start:start + piece])
            handler.wfile.flush()
            time.sleep(0.1)

    @staticmethod
    def _json(handler: BaseHTTPRequestHandler, payload: object, body: bool) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if body:
            handler.wfile.write(data)

    @staticmethod
    def _error(handler: BaseHTTPRequestHandler, status: int, code: str, commit: str = "") -> None:
        handler.send_response(status)
        if code:
            handler.send_header("X-Error-Code", code)
        if commit:
            handler.send_header("X-Repo-Commit", commit)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


def released_pocket_repos(checkpoint: Path) -> dict[str, Repo]:
    """A bundled tiny Pocket TTS checkpoint laid out as the released one: the model repo, whose processor
    config names the codec's repo, and the codec repo itself."""
    main = {p.relative_to(checkpoint).as_posix(): p.read_bytes() for p in checkpoint.rglob("*")
            if p.is_file() and p.relative_to(checkpoint).parts[0] != CODEC}
    processor = json.loads(main["processor_config.json"])
    processor[CODEC] = {"audio_tokenizer_class": "PocketTTSAudioTokenizerModel",
                        "audio_tokenizer_name_or_path": CODEC_HUB_ID}
    main["processor_config.json"] = json.dumps(processor, indent=2).encode()
    codec = {p.name: p.read_bytes() for p in (checkpoint / CODEC).iterdir() if p.is_file()}
    return {POCKET_HUB_ID: Repo(main), CODEC_HUB_ID: Repo(codec)}
