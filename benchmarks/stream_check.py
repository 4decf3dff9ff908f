"""Check on a GPU: a CSM job through the real worker streams ChunkPiece events that add up to each chunk.

    python -m tests.tiny_models /tmp/tiny && python benchmarks/stream_check.py [MODEL_DIR]

On the CPU nothing streams (plain generate), so every chunk shows 0 pieces there.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from inference.worker.client import WorkerClient  # noqa: E402
from inference.worker.protocol import ChunkPiece, ChunkReady, SpeakJob  # noqa: E402

if __name__ == "__main__":
    events = []
    job = SpeakJob("Hello there. A second sentence follows here.", Path("assets/voices/sample.wav"),
                   Path("assets/voices/sample.txt").read_text().strip(),
                   sys.argv[1] if len(sys.argv) > 1 else "/tmp/tiny/csm", seed=1, chunk_chars=30)
    with WorkerClient() as client:
        result = client.speak(job, on_event=events.append)
    pieces = [e for e in events if isinstance(e, ChunkPiece)]
    ready = [e for e in events if isinstance(e, ChunkReady)]
    print("plan:", result.plan, "| chunks:", len(ready), "| pieces:", len(pieces))
    for chunk in ready:
        mine = [p.audio for p in pieces if p.index == chunk.index]
        equal = bool(mine) and np.array_equal(np.concatenate(mine), chunk.audio)
        print(f"chunk {chunk.index}: {len(mine)} pieces, add up to the chunk: {equal}")
