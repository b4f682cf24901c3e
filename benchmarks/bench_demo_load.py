"""Thirty visitors at once: the demo under a classroom's load.

Starts ``python -m demo`` on 127.0.0.1 (nothing else is ever contacted) and
lets N simulated visitors (gradio_client, one session each) arrive within a
few seconds and do what a class does: inspect two images, ask why (the most
anomalous patch and a clicked point); every sixth scores the labelled set on
the Threshold tab and moves its slider three times; one fits a model. Prints
p50 / p95 latency per endpoint, the errors, and the server's memory.

    python benchmarks/bench_demo_load.py [--visitors 30] [--concurrency 2] [--max-seconds 600]
    python benchmarks/bench_demo_load.py --large-mp 79    # visitors upload 79-megapixel PNGs

Bounded: at most 60 visitors, and the run stops (exit 1) after --max-seconds.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # the only address this benchmark talks to


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the demo exited with code {proc.returncode}:\n{proc.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s") from None
            time.sleep(0.5)


class Recorder:
    def __init__(self):
        self.times: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def call(self, client, *args, api_name: str):
        t0 = time.perf_counter()
        try:
            out = client.predict(*args, api_name=api_name)
        except Exception as exc:
            with self.lock:
                self.errors.append(f"{api_name}: {type(exc).__name__}: {str(exc)[:200]}")
            return None
        with self.lock:
            self.times[api_name].append(time.perf_counter() - t0)
        return out


def visitor(i: int, seed: int, url: str, images: list[str], good: list[str], rec: Recorder,
            stop: threading.Event):
    from gradio_client import Client, handle_file

    rng = random.Random(seed)
    try:
        client = Client(url, verbose=False)
    except Exception as exc:
        rec.errors.append(f"connect: {type(exc).__name__}: {exc}")
        return
    steps = [lambda: rec.call(client, handle_file(rng.choice(images)), 1.0, api_name="/predict"),
             lambda: rec.call(client, api_name="/explain_most_anomalous"),
             lambda: rec.call(client, handle_file(rng.choice(images)), 1.0, api_name="/predict"),
             lambda: rec.call(client, handle_file(rng.choice(images)), rng.randrange(224), rng.randrange(224),
                              api_name="/explain")]
    slider = {}

    def evaluate():
        out = rec.call(client, "brick", None, api_name="/evaluate_set")
        if out:
            slider.update(out[0])  # the slider's new range

    def move():
        if slider:
            rec.call(client, rng.uniform(float(slider["minimum"]), float(slider["maximum"])),
                     api_name="/set_threshold")

    if i % 6 == 3:  # a group on the Threshold tab
        steps += [evaluate, move, move, move]
    if i == 1:  # one visitor fits their own model
        steps.append(lambda: rec.call(client, [handle_file(p) for p in good[:6]], api_name="/fit"))
    for step in steps:
        if stop.is_set():
            return
        step()
        time.sleep(rng.uniform(0.2, 1.5))  # reading the page


def large_images(sources: list[str], megapixels: float, count: int, folder: Path) -> list[str]:
    """``count`` different PNGs of about ``megapixels`` each (a built-in image blown up, one
    pixel changed per file so that Gradio caches each upload apart), under 40 MB each."""
    from PIL import Image

    side = int((megapixels * 1e6) ** 0.5)
    out = []
    for i in range(count):
        img = Image.open(sources[i % len(sources)]).convert("RGB")
        img = img.resize((side, side), Image.Resampling.NEAREST)
        img.putpixel((i, 0), (i % 256, 0, 0))
        path = folder / f"large-{i}.png"
        img.save(path, compress_level=6)
        out.append(str(path))
    return out


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visitors", type=int, default=30)
    ap.add_argument("--concurrency", type=int, default=2, help="the demo's --concurrency")
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--arrival-seconds", type=float, default=6.0, help="all visitors arrive within this")
    ap.add_argument("--waves", type=int, default=1, help="visitor waves, one after another (memory check)")
    ap.add_argument("--large-mp", type=float, default=0, metavar="MP",
                    help="visitors inspect PNGs of this many megapixels (8 different ones; 0: the built-in "
                         "test images)")
    ap.add_argument("--session-ttl", type=float, default=20.0,
                    help="seconds a session keeps its models (the demo's default is 30 min)")
    args = ap.parse_args(argv)
    if not 1 <= args.visitors <= 60 or not 1 <= args.waves <= 5:
        ap.error("--visitors must be between 1 and 60, --waves between 1 and 5")

    from patchcore_core.data.builtin import builtin_root
    from patchcore_core.data.mvtec import MVTecCategory
    from patchcore_core.util.tables import format_table

    cache = tempfile.mkdtemp(prefix="bench-demo-")
    env = {**os.environ, "PATCHCORE_CACHE": cache, "GRADIO_ANALYTICS_ENABLED": "False",
           "HF_HUB_OFFLINE": "1", "PATCHCORE_DEMO_SESSION_TTL": str(args.session_ttl),
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    os.environ["PATCHCORE_CACHE"] = cache
    cat = MVTecCategory(builtin_root(), "brick")
    images = [str(t.path) for t in cat.test]
    if args.large_mp:
        if not 1 <= args.large_mp <= 80:
            ap.error("--large-mp must be between 1 and 80 (the demo refuses more than 80 megapixels)")
        images = large_images(images, args.large_mp, min(8, args.visitors), Path(cache))
    good = [str(p) for p in cat.train]
    port = free_port()
    url = f"http://{HOST}:{port}/"
    cmd = [sys.executable, "-m", "demo", "--host", HOST, "--port", str(port), "--device", "cpu",
           "--concurrency", str(args.concurrency)]
    proc = subprocess.Popen(cmd,
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(url, proc, timeout_s=300)
        idle = rss_mb(proc.pid)
        rec, stop = Recorder(), threading.Event()
        peak = [idle]

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(proc.pid))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        deadline = t0 + args.max_seconds
        timed_out, after_wave = False, []
        for wave in range(args.waves):
            threads = []
            for i in range(args.visitors):
                t = threading.Thread(target=visitor, args=(i, wave * 100 + i, url, images, good, rec, stop),
                                     daemon=True)
                t.start()
                threads.append(t)
                time.sleep(args.arrival_seconds / args.visitors)
            for t in threads:
                t.join(timeout=max(0.0, deadline - time.perf_counter()))
            timed_out = timed_out or any(t.is_alive() for t in threads)
            if timed_out:
                break
            time.sleep(args.session_ttl + 5)  # the wave's sessions expire; Gradio drops state every second
            after_wave.append(rss_mb(proc.pid))
        stop.set()
        wall = time.perf_counter() - t0

        rows = [{"endpoint": name, "calls": len(v), "p50 s": percentile(v, 50), "p95 s": percentile(v, 95),
                 "max s": max(v)} for name, v in sorted(rec.times.items())]
        large = f", {args.large_mp:g}-megapixel PNGs" if args.large_mp else ""
        print(f"\n{args.waves} x {args.visitors} visitors{large}, concurrency {args.concurrency}, "
              f"{os.cpu_count()} CPU cores, wall {wall:.1f} s "
              f"(with {args.session_ttl + 5:.0f} s after each wave)"
              f"{' (STOPPED at --max-seconds)' if timed_out else ''}")
        print(format_table(rows, digits=2))
        waves = ", ".join(f"{m:.0f}" for m in after_wave)
        print(f"\nserver memory (RSS): idle {idle:.0f} MB, peak {peak[0]:.0f} MB; after each wave's sessions "
              f"expired: {waves} MB")
        print(f"errors: {len(rec.errors)}")
        for e in rec.errors[:20]:
            print("  ", e)
        return 1 if (rec.errors or timed_out) else 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
