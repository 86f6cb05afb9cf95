"""What one photo upload costs the web process: wall time and peak memory of ``process_photo``.

Each case runs in a fresh Python process; a thread samples its resident memory every 2 ms while
``process_photo`` runs, and the figure is the peak above the resident memory just before. Cases: the
decompression bomb of issue 16 (a flat 6300x6300 PNG, about 130 KB on disk), the largest PNG
still accepted (8 megapixels), a 12-megapixel phone JPEG, and an ordinary 1600x1200 photo.

    .venv/bin/python bench/photos.py
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, threading, time
import psutil
sys.path.insert(0, {root!r})
from app.services.photos import PhotoError, process_photo
data = open({path!r}, "rb").read()
me = psutil.Process()
base = me.memory_info().rss
peak = [base]
done = threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], me.memory_info().rss)
        time.sleep(0.002)
sampler = threading.Thread(target=sample)
sampler.start()
start = time.perf_counter()
try:
    process_photo(data)
    outcome = "accepted"
except PhotoError as error:
    outcome = "refused: " + str(error)
elapsed = time.perf_counter() - start
done.set()
sampler.join()
print(json.dumps({{"seconds": elapsed, "extra_mb": (peak[0] - base) / 2**20, "outcome": outcome}}))
"""


def make_cases(folder: Path) -> dict[str, Path]:
    from PIL import Image

    cases = {
        "flat PNG 6300x6300": ("PNG", Image.new("RGB", (6300, 6300), (200, 120, 40)), {"optimize": True}),
        "flat PNG 4096x2048": ("PNG", Image.new("RGB", (4096, 2048), (40, 120, 200)), {"optimize": True}),
        "phone JPEG 4032x3024": ("JPEG", _noisy(4032, 3024), {"quality": 75}),
        "photo JPEG 1600x1200": ("JPEG", _noisy(1600, 1200), {"quality": 90}),
    }
    paths = {}
    for name, (kind, image, options) in cases.items():
        out = io.BytesIO()
        image.save(out, format=kind, **options)
        path = folder / (name.replace(" ", "_") + "." + kind.lower())
        path.write_bytes(out.getvalue())
        paths[name] = path
    return paths


def _noisy(width: int, height: int):  # type: ignore[no-untyped-def]
    """A picture with detail (gradients and noise), so the JPEG is as heavy as a real one."""
    from PIL import Image

    noise = Image.effect_noise((width, height), 12).convert("RGB")
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    return Image.blend(noise, gradient, 0.5)


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, path in make_cases(Path(tmp)).items():
            code = CHILD.format(root=str(ROOT), path=str(path))
            result = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout)
            size_kb = path.stat().st_size / 1024
            print(
                f"{name:<22} {size_kb:8.0f} KB  {result['seconds'] * 1000:7.0f} ms  "
                f"{result['extra_mb']:7.1f} MB peak above baseline  {result['outcome']}"
            )


if __name__ == "__main__":
    main()
