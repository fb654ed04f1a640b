"""`make bench`: the three speed figures of the foundation issue, each against a baseline
measured in the same run.

1. quickstart: wall time and peak memory of `simlink run scenarios/quickstart.yaml`
   (install excluded; a fresh output folder), against the 5-minute / 4 GB budget;
2. link throughput: information bits per second through simlink's digital link vs a bare
   Sionna chain with the same code, modulation, channel and batch (ratio, target >= 0.9);
3. SNR sweep cost: the wall time of a sweep over 8 SNR points vs the same sweep over 1
   (ratio, target < 2, because the source side is encoded once and reused);
4. validate: wall time of `simlink validate scenarios/quickstart.yaml` in a fresh process
   (goal < 2 s; it imports neither torch nor Sionna), against a bare `python -c "import simlink"`
   in the same run (the interpreter's own start-up);
5. entropy coding: the learned codecs' Gaussian-mixture coder's symbol rate vs constriction's raw
   rate on the same symbols (``benchmarks/bench_entropy.py``; ratio, goal >= 1/3);
6. LDPC decoder: simlink's numba decoder vs Sionna's on the same LLRs at three Es/N0 points, both
   with early termination (``benchmarks/bench_decoder.py``; ratio, goal >= 10), and the quickstart
   with ``link.decoder: sionna`` vs ``auto`` on a warm model cache (the link's share of its time).

Usage: ``python benchmarks/run_all.py [--quick]``; prints a table and writes
``results/bench/bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def bench_quickstart() -> dict:
    """Run the quickstart in a child process with an empty model cache (so the learned codec is
    trained, as on a fresh clone); wall time and the child's peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(sys.executable).with_name("simlink")
        cmd = [str(exe), "run", str(ROOT / "scenarios" / "quickstart.yaml"), "--out", tmp, "--quiet",
               "--cache", str(Path(tmp) / "cache")]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"quickstart_wall_s": round(wall, 2), "quickstart_peak_mem_gb": round(peak_kib / 2**20, 3),
            "budget_wall_s": 300, "budget_mem_gb": 4.0}


def bench_quickstart_decoders() -> dict:
    """The quickstart twice on one warm model cache (trained once first, not timed), with
    ``link.decoder: sionna`` and with ``auto`` (numba on this CPU): wall times and their ratio."""
    import yaml

    exe = Path(sys.executable).with_name("simlink")
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        subprocess.run([str(exe), "train", str(ROOT / "scenarios" / "quickstart.yaml"), "--cache", str(cache)],
                       check=True, capture_output=True)
        for decoder in ("sionna", "auto"):
            sc = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
            sc["link"]["decoder"] = decoder
            f = Path(tmp) / f"quickstart_{decoder}.yaml"
            f.write_text(yaml.safe_dump(sc))
            t0 = time.perf_counter()
            subprocess.run([str(exe), "run", str(f), "--out", str(Path(tmp) / decoder), "--quiet", "--no-plots",
                            "--cache", str(cache)], check=True)
            out[f"quickstart_{decoder}_s"] = round(time.perf_counter() - t0, 2)
    out["ratio_sionna_over_auto"] = round(out["quickstart_sionna_s"] / out["quickstart_auto_s"], 2)
    out["goal_auto_s"] = 90
    return out


def bench_validate(repeats: int = 5) -> dict:
    """Median wall time of ``simlink validate`` of the quickstart in a fresh process, and of a bare
    ``import simlink`` (the baseline: interpreter start-up and the package's own import)."""
    import statistics

    def timed(cmd: list[str]) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    exe = Path(sys.executable).with_name("simlink")
    validate = timed([str(exe), "validate", str(ROOT / "scenarios" / "quickstart.yaml")])
    bare = timed([sys.executable, "-c", "import simlink"])
    return {"validate_s": round(validate, 3), "import_simlink_s": round(bare, 3),
            "ratio_validate_over_import": round(validate / bare, 2), "goal_validate_s": 2.0}


SOURCE_STAGES = ("data", "link_setup", "encode", "decode", "metrics", "link_prepare")
LINK_STAGES = ("link", "receiver")


def _sweep(snrs: list[float], out: str) -> dict:
    """Run the benchmark sweep; wall time and its split into source side and per-SNR link work."""
    from simlink.scenario import parse_scenario
    from simlink.sweep import run_scenario

    sc = parse_scenario(
        {
            "name": "bench_snr",
            "seed": 1,
            "device": "auto",  # a GPU when there is one: where real sweeps run
            "dataset": {"name": "synthetic", "n_images": 16, "image_size": 64},
            "methods": [
                {"name": "jpeg", "target_bpp": [0.5, 1.0, 2.0]},
                {"name": "jpeg2000", "target_bpp": [0.5, 1.0, 2.0]},
                {"name": "webp", "target_bpp": [0.5, 1.0, 2.0]},
                {"name": "heif", "target_bpp": [0.5, 1.0, 2.0]},
            ],
            "link": {"code": {"k": 1024, "n": 1536}, "modulation": 16},
            "channels": [{"name": "awgn"}],
            "snr_db": snrs,
        },
        source="bench",
    )
    t0 = time.perf_counter()
    run_scenario(sc, out, quiet=True, plots=False)
    wall = time.perf_counter() - t0
    stages = json.loads((Path(out) / "manifest.json").read_text())["runs"][-1]["stage_s"]
    return {
        "wall_s": wall,
        "source_s": sum(stages.get(k, 0.0) for k in SOURCE_STAGES),
        "link_s": sum(stages.get(k, 0.0) for k in LINK_STAGES),
    }


def bench_snr_sweep() -> dict:
    """Wall time of an 8-point SNR sweep over a 1-point sweep, same methods and images.

    Also splits each run into source-side seconds (data, encoding with target-bpp search,
    error-free decoding, metrics, link transmitter side: done once) and link seconds (channel,
    demapping, BP decoding, error policy: done per SNR point), to show where the time goes.
    """
    eight = [0.0, 4.0, 8.0, 12.0, 16.0, 20.0, 24.0, 28.0]
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        _sweep([12.0], os.path.join(a, "warm"))  # warm-up: imports, codec libraries, LDPC graphs
        one = _sweep([12.0], os.path.join(a, "one"))
        many = _sweep(eight, os.path.join(b, "eight"))
    return {
        "sweep_1_snr_s": round(one["wall_s"], 2),
        "sweep_8_snr_s": round(many["wall_s"], 2),
        "sweep_ratio_8_over_1": round(many["wall_s"] / one["wall_s"], 3),
        "source_side_1_snr_s": round(one["source_s"], 2),
        "source_side_8_snr_s": round(many["source_s"], 2),
        "source_side_ratio_8_over_1": round(many["source_s"] / one["source_s"], 3),
        "link_s_per_snr_point_8": round(many["link_s"] / len(eight), 2),
        "link_s_per_snr_point_1": round(one["link_s"], 2),
        "target_ratio": "< 2",
        "device": "cuda" if __import__("torch").cuda.is_available() else "cpu",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller link benchmark")
    args = ap.parse_args()
    import bench_link

    results: dict = {}
    print("== link throughput (simlink vs bare Sionna) ==", flush=True)
    results["link"] = bench_link.run(quick=args.quick)
    print(json.dumps(results["link"], indent=2, default=str), flush=True)
    print("== SNR sweep cost (8 points vs 1) ==", flush=True)
    results["snr_sweep"] = bench_snr_sweep()
    print(json.dumps(results["snr_sweep"], indent=2), flush=True)
    print("== simlink validate ==", flush=True)
    results["validate"] = bench_validate()
    print(json.dumps(results["validate"], indent=2), flush=True)
    import bench_entropy

    print("== entropy coding (mixture coder vs constriction raw) ==", flush=True)
    results["entropy"] = bench_entropy.run(n_images=200 if args.quick else 1000)
    print(json.dumps(results["entropy"], indent=2), flush=True)
    import bench_decoder

    print("== LDPC decoder (numba vs Sionna, same LLRs) ==", flush=True)
    results["decoder"] = bench_decoder.run(quick=args.quick)
    print(json.dumps({k: v for k, v in results["decoder"].items()}, indent=2, default=str), flush=True)
    print("== quickstart, decoder sionna vs auto (warm cache) ==", flush=True)
    results["quickstart_decoders"] = bench_quickstart_decoders()
    print(json.dumps(results["quickstart_decoders"], indent=2), flush=True)
    print("== quickstart (make run) ==", flush=True)
    results["quickstart"] = bench_quickstart()
    print(json.dumps(results["quickstart"], indent=2), flush=True)

    link = results["link"]
    print("\nsummary")
    print(f"  link throughput ratio simlink/bare Sionna : {link.get('ratio', float('nan')):.3f}   (target >= 0.9)")
    sw = results["snr_sweep"]
    print(f"  SNR sweep cost 8 points / 1 point         : {sw['sweep_ratio_8_over_1']:.3f}   (target < 2)")
    print(f"    source side (encoded once) 8 / 1        : {sw['source_side_ratio_8_over_1']:.3f}"
          f"   ({sw['source_side_8_snr_s']:.1f} s vs {sw['source_side_1_snr_s']:.1f} s)")
    print(f"    link per SNR point (BP on this device)  : {sw['link_s_per_snr_point_8']:.2f} s")
    v = results["validate"]
    print(f"  simlink validate (quickstart)             : {v['validate_s']:.2f} s   (goal < 2 s; bare import "
          f"{v['import_simlink_s']:.2f} s, ratio {v['ratio_validate_over_import']:.1f})")
    e = results["entropy"]
    print(f"  entropy coding rate mixture / raw         : {e['ratio_vs_raw_gaussian']:.3f}   (goal >= 1/3; "
          f"{e['mixture_encode_s_per_1000_images']:.2f} s vs {e['raw_gaussian_s_per_1000_images']:.2f} s per 1000 images)")
    dec = results["decoder"]
    print("  LDPC decoder numba / Sionna (early stop)  : " + ", ".join(
        f"{dec[p]['ratio']:.1f}x {p} ({dec[p]['esno_db']:g} dB, agree {dec[p]['agree']:.3f})"
        for p in ("below", "waterfall", "above")) + "   (goal >= 10)")
    qd = results["quickstart_decoders"]
    print(f"  quickstart decoder sionna / auto          : {qd['quickstart_sionna_s']:.1f} s / {qd['quickstart_auto_s']:.1f} s"
          f" = {qd['ratio_sionna_over_auto']:.2f}   (goal: auto under 90 s)")
    q = results["quickstart"]
    print(f"  quickstart wall time / peak memory        : {q['quickstart_wall_s']:.1f} s / {q['quickstart_peak_mem_gb']:.2f} GB"
          "   (budget 300 s / 4 GB)")
    out = ROOT / "results" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
