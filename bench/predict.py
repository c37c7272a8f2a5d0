"""``attrret predict`` throughput on a mixed real gallery: gate, flip TTA, torch vs onnxruntime.

    .venv/bin/python -m bench predict
    .venv/bin/python bench/predict.py [--workdir W] [--per-subject 128] [--batch-size 64]

Models: the default set, router + 15 tasks (every task of the schema), at the schema's default
input sizes (router 160x160, pedestrians 256x128, vehicles 128x192) on the default backbone.
With ``--workdir W`` its ``W/models`` (e.g. real trained ones); without, a set trained for one
epoch on 80 pa100k-mini and 120 vehicles-mini images, kept under ``attrret-work/bench-predict``
(throughput depends on the architecture and the input sizes, never on how well the weights
were fitted).

Gallery: ``--per-subject`` pa100k-mini crops plus as many vehicles-mini photos (half each of its
two parts), none of them seen in training, listed in a file so the order mixes both kinds.

Cells, each in a fresh process running :func:`attrret.retrieval.indexer.build_index` into a new
index (images/s over the whole run, models built and images decoded included; the interpreter's
and imports' start-up excluded) with its peak resident memory:

- the default, ``--runtime auto`` on the CPU: onnxruntime on the models' per-subject graphs,
  gated, float32 (:mod:`attrret.export.onnx_cache`; the cache warmed first, its one-time export
  timed apart), without and with flip TTA;
- ``--runtime torch``: ``--gate none`` and ``--gate router``, flip TTA on and off, in the host's
  ``auto`` precision, and gated / ungated in fp32 (what a host without bf16 runs);
- onnxruntime on the one graph ``attrret export onnx --tta none`` wrote (``--onnx FILE``: every
  model on every image);
- the floor: the router plus one bare trunk (front and one tail) at each image's subject size,
  gated, no flip, PyTorch: the trunk forwards the gated default needs.

Beside them, the tails of one front (the 12 pedestrian tasks) on one batch of its output, as
separate modules (what the engine runs) and as one grouped computation (``torch.func.vmap`` over
the stacked tail weights, which turns each convolution into a grouped one).

Every cell runs ``--rounds`` times (default 2), the rounds interleaving the cells, and reports
its median images/s and largest peak RSS: this shared 2-core host drifts by about 10% between
runs. Ratios are against ``--gate none`` with flip TTA, every model on every image: what ``attrret
predict`` did before router gating and the no-flip default (the reference), measured in the
same run. Targets (issue 31): the default >= 3x the reference; the floor / the default <= 1.5. Prints a Markdown
table; writes ``bench/results/predict.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from bench import json_header  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PEDESTRIANS, VEHICLES = DATA / "pa100k-mini", DATA / "vehicles-mini"
TRAIN_PED, TRAIN_VEH = 80, 120  # the quick set's training images (vehicles: half brand+type, half colour)

#: (name, runtime, gate, tta, tasks, precision): tasks None = every model (the floor keeps one per
#: subject); precision None = auto (bf16 where the CPU has it). The fp32 cells are what a host
#: without bf16 (AVX2 only) runs, against onnxruntime's float32 on the same machine.
#: The reference is what ``attrret predict`` ran before the engine: every model on every image,
#: with flip TTA. The default is router-gated, without flip TTA (attrret.ensemble.TTA_DEFAULT).
CELLS = (
    ("before: ungated, flip (reference)", "torch", "none", "flip", None, None),
    ("default: onnxruntime, gated, no flip", "onnx-cached", "router", "none", None, "fp32"),
    ("onnxruntime, gated, --tta flip", "onnx-cached", "router", "flip", None, "fp32"),
    ("--runtime torch: gated, no flip", "torch", "router", "none", None, None),
    ("--runtime torch: gated, flip", "torch", "router", "flip", None, None),
    ("--runtime torch: ungated, no flip", "torch", "none", "none", None, None),
    ("--runtime torch --precision fp32 (what a host without bf16 runs): gated", "torch", "router", "none", None, "fp32"),
    ("--runtime torch --precision fp32: ungated", "torch", "none", "none", None, "fp32"),
    ("--onnx FILE: one graph, every model, no flip", "onnx", "none", "none", None, None),
    ("floor: router + one trunk per subject, no flip", "torch", "router", "none", ("router", "pedestrian.gender", "vehicle.color"), None),
)
DEFAULT_CELL = "default: onnxruntime, gated, no flip"


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _quick_models(root: Path) -> Path:
    """Train the default task set for one epoch on a few real images (module doc) under ``root``
    (kept: a later run reuses it); the workdir."""
    work = root / "w"
    if (work / "models" / "router" / "model.pt").is_file() and (root / "done").is_file():
        return work
    data = root / "train"
    if data.exists():
        shutil.rmtree(data)
    (data / "images").mkdir(parents=True)
    ped = _lines(PEDESTRIANS / "labels.txt")[:TRAIN_PED]
    veh = _lines(VEHICLES / "labels.txt")
    typed = [v for v in veh if not v.startswith("dvc_") and len(v.split("$")[1].split()) == 2][: TRAIN_VEH // 2]
    coloured = [v for v in veh if v.startswith("dvc_")][: TRAIN_VEH // 2]
    for line, src in [*((p, PEDESTRIANS) for p in ped), *((v, VEHICLES) for v in typed + coloured)]:
        name = line.split("$")[0]
        (data / "images" / name).symlink_to(src / "images" / name)
    (data / "labels.txt").write_text("\n".join(ped + typed + coloured) + "\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "attrret", "train", "--task", "all", "--data", str(data), "--workdir", str(work),
           "--epochs", "1", "--quiet"]
    print(f"training the quick model set ({len(ped)} pedestrian, {len(typed) + len(coloured)} vehicle images) ...", file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    (root / "done").write_text("")
    return work


def _gallery(root: Path, per_subject: int) -> Path:
    """A list file of unseen images, pedestrians and vehicles alternating (module doc)."""
    ped = [PEDESTRIANS / "images" / line.split("$")[0] for line in _lines(PEDESTRIANS / "labels.txt")[TRAIN_PED:]][:per_subject]
    names = sorted(p.name for p in (VEHICLES / "images").iterdir())
    stanford = [n for n in names if not n.startswith("dvc_")][-(per_subject // 2):]
    colour = [n for n in names if n.startswith("dvc_")][-(per_subject - per_subject // 2):]
    veh = [VEHICLES / "images" / n for n in stanford + colour]
    mixed = [p for pair in zip(ped, veh) for p in pair]
    listing = root / "gallery.txt"
    listing.write_text("\n".join(map(str, mixed)) + "\n", encoding="utf-8")
    return listing


def child(spec: str) -> None:
    """One cell, in this fresh process: build the index, print seconds and what it computed in."""
    cell = json.loads(spec)
    from attrret.classifiers.engine import Ensemble
    from attrret.ensemble import Member, Predictor
    from attrret.retrieval.indexer import build_index, find_members

    members = find_members(cell["workdir"])
    if cell["tasks"]:
        keep = set(cell["tasks"])
        members = [Member(m.label, tuple(d for d in m.task_dirs if d.name in keep), m.weight, m.img_sizes) for m in members]
    predictor: Predictor = Ensemble.open(members, tta=cell["tta"], device="cpu", precision=cell["precision"])
    if cell["runtime"] == "onnx":
        from attrret.export.onnx_runtime import open_graph

        predictor = open_graph(cell["onnx"], device="cpu")
    elif cell["runtime"] == "onnx-cached":  # what --runtime auto runs on the CPU, the cache warm
        from attrret.export.onnx_cache import cached_graphs
        from attrret.schema import load_schema

        predictor = cached_graphs(predictor, load_schema(), cache_dir=cell["cache"], log=lambda s: None)
    t0 = time.perf_counter()
    summary = build_index(cell["gallery"], cell["out"], predictor, batch_size=cell["batch_size"], progress=False, log=lambda s: None,
                          gate=cell["gate"])
    print(json.dumps({"seconds": time.perf_counter() - t0, "images": summary.predicted, "precision": summary.precision,
                      "rss_mib": _peak_rss_mib()}))


def _peak_rss_mib() -> float:
    """This process's peak resident memory. ``VmHWM`` belongs to the address space ``exec`` made,
    so it is this program's own; ``ru_maxrss`` keeps the parent's peak across fork and exec
    (a bench run after a larger one in the same ``python -m bench`` read the larger one's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child_tails(workdir: str, batch: int) -> None:
    """The tails of the largest front group (the 12 pedestrian tasks) on one batch of front
    output, run as separate modules (what the engine does) and as one grouped computation
    (``torch.func.vmap`` over the stacked tail weights: grouped convolutions), in bf16 where the
    host runs it; prints seconds per batch of each, best of 3."""
    import torch
    from torch.func import functional_call, vmap

    from attrret.classifiers.engine import Engine
    from attrret.classifiers.runtime import resolve_precision
    from attrret.retrieval.indexer import find_members

    engine = Engine.build(find_members(workdir)).eval()
    engine.to(memory_format=torch.channels_last)
    g = max(range(len(engine.fronts)), key=lambda f: engine.tail_front.count(f))
    tails = [engine.tails[k] for k, f in enumerate(engine.tail_front) if f == g]
    pre, _ = engine.inputs[engine.front_input[g]]
    x = torch.randn(2 * batch, 3, pre.height, pre.width, generator=torch.Generator().manual_seed(0))
    prec = resolve_precision(None, torch.device("cpu"))

    class Features(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, f: torch.Tensor) -> torch.Tensor:
            return self.model.features(f, from_front=True)

    keys = sorted(tails[0].tail_keys() - {"head.weight", "head.bias"})
    stacked = {"model." + k: torch.stack([dict(t.state_dict())[k] for t in tails]) for k in keys}
    one = Features(tails[0])
    with torch.no_grad(), prec.autocast():
        feats = engine.fronts[g].front(x.contiguous(memory_format=torch.channels_last)).float()
        runs = {"separate modules": lambda: [t.features(feats, from_front=True) for t in tails],
                "one grouped computation (vmap)": lambda: vmap(lambda p, f: functional_call(one, p, (f,), strict=False),
                                                               in_dims=(0, None))(stacked, feats)}
        best = {}
        for _ in range(3):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - t0)
    print(json.dumps({"tails": len(tails), "views": 2 * batch, "precision": prec.name, "seconds": best}))


def run_cell(cell: dict) -> dict:
    """Run one cell in a child process: its timing and peak RSS, as the child reports them."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(cell)],
                              stdout=subprocess.PIPE, stderr=err, text=True)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"cell {cell['name']!r} failed: {err.read().strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, help="use W/models instead of training a quick set")
    ap.add_argument("--per-subject", type=int, default=512, help="pedestrian crops, and as many vehicle photos")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=2, help="run every cell this many times, interleaved; report the median")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-tails", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    if args.child_tails:
        child_tails(args.child_tails, args.batch_size)
        return 0
    if not (PEDESTRIANS.is_dir() and VEHICLES.is_dir()):
        print(f"{DATA}: pa100k-mini or vehicles-mini not here; nothing measured", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="attrret-bench-predict-") as tmp:
        root = Path(tmp)
        work = args.workdir or _quick_models(ROOT / "attrret-work" / "bench-predict")
        gallery = _gallery(root, args.per_subject)
        onnx = root / "models.onnx"
        print("exporting the ONNX graph ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "attrret", "export", "onnx", "--workdir", str(work), "-o", str(onnx), "--tta", "none"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print("exporting the cached per-subject graphs (--runtime auto on a float32 CPU) ...", file=sys.stderr)
        one = root / "one.txt"
        one.write_text(_lines(gallery)[0] + "\n", encoding="utf-8")
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "attrret", "predict", "--images", str(one), "-w", str(work), "-o",
                        str(root / "warm"), "--runtime", "onnx", "--precision", "fp32", "--device", "cpu", "-q"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "ATTRRET_CACHE": str(root / "cache")})
        export_s = time.perf_counter() - t0
        subprocess.run([sys.executable, "-m", "attrret", "predict", "--images", str(one), "-w", str(work), "-o",
                        str(root / "warm-flip"), "--runtime", "onnx", "--tta", "flip", "--device", "cpu", "-q"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "ATTRRET_CACHE": str(root / "cache")})
        runs: dict[str, list[dict]] = {}
        for r in range(args.rounds):  # rounds interleave the cells: the shared host's drift meets every cell alike
            for i, (name, runtime, gate, tta, tasks, precision) in enumerate(CELLS):
                cell = {"name": name, "runtime": runtime, "gate": gate, "tta": tta, "tasks": tasks, "precision": precision,
                        "workdir": str(work), "gallery": str(gallery), "out": str(root / f"index{r}-{i}"), "onnx": str(onnx),
                        "cache": str(root / "cache"), "batch_size": args.batch_size}
                print(f"round {r + 1}/{args.rounds}: {name} ...", file=sys.stderr)
                runs.setdefault(name, []).append(run_cell(cell))
        rows = []
        for name, runtime, gate, tta, tasks, _ in CELLS:
            each = [res["images"] / res["seconds"] for res in runs[name]]
            rows.append({"cell": name, "runtime": runtime, "gate": gate, "tta": tta, "tasks": list(tasks) if tasks else "all",
                         **runs[name][0], "rss_mib": max(res["rss_mib"] for res in runs[name]),
                         "images_per_s": statistics.median(each), "rounds": [round(x, 2) for x in each]})
        print("tails: separate vs grouped ...", file=sys.stderr)
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child-tails", str(work), "--batch-size",
                              str(args.batch_size)], check=True, capture_output=True, text=True).stdout
        tails = json.loads(out.strip().splitlines()[-1])
    ref = rows[0]["images_per_s"]
    default = next(r for r in rows if r["cell"] == DEFAULT_CELL)
    floor = rows[-1]
    print(f"\n`attrret predict` on {2 * args.per_subject} real images, median of {args.rounds} interleaved round(s) ({args.per_subject} pa100k-mini + "
          f"{args.per_subject} vehicles-mini), batch {args.batch_size}, {os.cpu_count()} CPUs, {rows[0]['precision']}\n")
    print("| cell | runtime | images/s | x reference | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['cell']} | {r['runtime']} ({r['precision']}) | {r['images_per_s']:.1f} | {r['images_per_s'] / ref:.2f} | "
              f"{r['rss_mib']} |")
    sep, grouped = tails["seconds"]["separate modules"], tails["seconds"]["one grouped computation (vmap)"]
    print(f"\nTails of one front ({tails['tails']} tasks, {tails['views']} views, {tails['precision']}): separate modules "
          f"{sep:.2f} s per batch, one grouped computation (torch.func.vmap) {grouped:.2f} s ({grouped / sep:.2f}x).")
    torch_auto = next(r for r in rows if r["cell"] == "--runtime torch: gated, no flip")
    torch32 = next(r for r in rows if r["runtime"] == "torch" and r["precision"] == "fp32" and r["gate"] == "router")
    print(f"\nThe default (onnxruntime, gated, fp32) vs --runtime torch gated: {default['images_per_s'] / torch_auto['images_per_s']:.2f}x "
          f"against {torch_auto['precision']} here, {default['images_per_s'] / torch32['images_per_s']:.2f}x against fp32 (what a host "
          f"without bf16 runs). Its graphs' one-time export (a predict of one image, process start included): {export_s:.0f} s.")
    print(f"\nDefault ({DEFAULT_CELL.split(': ')[1]}) vs reference: {default['images_per_s'] / ref:.2f}x (target >= 3x). "
          f"Floor / default: {floor['images_per_s'] / default['images_per_s']:.2f} (target <= 1.5).")
    doc = {**json_header("predict"), "per_subject": args.per_subject, "batch_size": args.batch_size, "rounds": args.rounds,
           "models": str(args.workdir) if args.workdir else "quick set (module doc)", "rows": rows, "tails": tails,
           "default_vs_reference": default["images_per_s"] / ref,
           "default_vs_torch": default["images_per_s"] / torch_auto["images_per_s"],
           "default_vs_torch_fp32": default["images_per_s"] / torch32["images_per_s"], "cached_export_seconds": export_s, "floor_vs_default": floor["images_per_s"] / default["images_per_s"]}
    out = ROOT / "bench" / "results" / "predict.json"
    atomic_write_text(out, json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
