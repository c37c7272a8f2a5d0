"""``attrret attributes IMAGE --workdir W``: the cost of one image through 16 task models, before and after
building each distinct frozen front once.

    .venv/bin/python bench/attributes.py [--rounds 3]

Models: router + 15 tasks trained by ``attrret train --task all`` (default backbone
tf_efficientnet_lite0 at its default 160 px, 1 epoch) on a small synthetic set, in a temporary
folder outside the project. Each row runs in fresh processes, interleaved, median of ``--rounds``:

- ``attrret attributes IMAGE --workdir W``: the command, from process start to its end;
- model set-up inside one process (imports and checkpoint loading done before the clock), the way ``predict`` builds models now (one model per group
  of tasks sharing a front; each task keeps only its tail and head) vs the way it did before
  (one model, with timm's factory and a dummy forward to size the head, per task).

- predict's start-up for one image, from process start to its probabilities: ``predict_probs``
  on the lean checkpoints as written (now) vs the previous path, one whole checkpoint per task
  (every trunk tensor in the file, saved in the same run) each built and run on its own (before);
  and ``attrret predict --images ONE`` itself, index written.

Also the checkpoint size per task: ``model.pt`` as written (lean: tail, head and the identity
of the pretrained front) beside the same model saved whole (the previous format).

Prints a Markdown table; writes ``bench/results/attributes.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the bench package, when run as a script

from bench import json_header  # noqa: E402
from attrret.io import atomic_write_text  # noqa: E402


def child(mode: str, workdir: str) -> None:
    """Print the seconds this process spends building every task model of ``workdir`` (``mode``:
    ``shared``, one architecture per front group, or ``per-task``, one per checkpoint)."""
    from attrret.classifiers.checkpoint import build_classifier, list_model_dirs, load_checkpoint
    from attrret.classifiers.engine import group_key, task_model

    from attrret._torchvision import ensure_torchvision

    ensure_torchvision()  # imports (timm, torchvision) paid before the clock: the rows time building only
    import timm  # noqa: F401

    cks = [load_checkpoint(d) for d in list_model_dirs(workdir)]
    t0 = time.perf_counter()
    if mode == "per-task":
        models = [build_classifier(ck) for ck in cks]
    else:  # what the predict engine does: one model per front group, each further task a tail sharing its front
        groups: dict[tuple, list] = {}
        for ck in cks:
            groups.setdefault(group_key(ck), []).append(ck)
        models = []
        for members in groups.values():
            model = build_classifier(members[0])
            models += [task_model(ck, model, k == 0) for k, ck in enumerate(members)]
    print(json.dumps({"seconds": time.perf_counter() - t0, "models": len(models)}))


def child_predict(mode: str, workdir: str, image: str) -> None:
    """Probabilities for one image from every task of ``workdir``, timed by the parent from process
    start. ``now``: ``predict_probs`` (one model per front group, lean checkpoints). ``before``:
    the previous path, each checkpoint built into its own model and run on the image."""
    from attrret.classifiers.checkpoint import list_model_dirs

    dirs = list_model_dirs(workdir)
    if mode == "now":
        from attrret.classifiers.engine import predict_probs

        probs = predict_probs(dirs, [Path(image)], progress=False)
    else:
        import torch

        from attrret.classifiers.preprocess import load_batch
        from attrret.classifiers.checkpoint import build_classifier, load_checkpoint

        probs = {}
        with torch.no_grad():
            for d in dirs:
                ck = load_checkpoint(d)
                model = build_classifier(ck)
                x = load_batch([image], ck.preprocess, ck.info.crop)
                probs[ck.task] = sum(model(v).softmax(-1) for v in (x, torch.flip(x, dims=[3]))) / 2
    print(json.dumps({"tasks": len(probs)}))


def write_whole(workdir: Path, out: Path) -> dict[str, float]:
    """Save every task of ``workdir`` whole (every trunk tensor, the format before lean
    checkpoints) under ``out/models/<task>/model.pt``; mean bytes per task, lean and whole."""
    from attrret.classifiers.checkpoint import FRONT_STORED, build_classifier, list_model_dirs, load_checkpoint, save_checkpoint

    lean, whole = [], []
    for d in list_model_dirs(workdir):
        ck = load_checkpoint(d)
        model = build_classifier(ck)
        meta = {k: v for k, v in ck.meta.items() if k not in ("front_sha256", "front_source")}
        meta.update(front=FRONT_STORED, front_hash=model.front_hash())
        target = out / "models" / d.name / "model.pt"
        target.parent.mkdir(parents=True)
        save_checkpoint(target, meta, model.state_dict())
        lean.append((d / "model.pt").stat().st_size)
        whole.append(target.stat().st_size)
    return {"lean": sum(lean) / len(lean), "whole": sum(whole) / len(whole), "tasks": len(lean)}


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--child", nargs=2, metavar=("MODE", "WORKDIR"), help=argparse.SUPPRESS)
    ap.add_argument("--child-predict", nargs=3, metavar=("MODE", "WORKDIR", "IMAGE"), help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "attributes.json"))
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    if args.child_predict:
        child_predict(*args.child_predict)
        return 0
    py = sys.executable
    attrret = [py, "-m", "attrret"]
    with tempfile.TemporaryDirectory(prefix="attrret-bench-attributes-") as tmp:
        data, work = Path(tmp) / "syn", Path(tmp) / "w"
        subprocess.run([*attrret, "data", "synth", "--out", str(data), "--pedestrians", "60", "--vehicles", "60"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([*attrret, "train", "--task", "all", "--data", str(data), "--workdir", str(work), "--epochs", "1", "--quiet"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        image = sorted((data / "test" / "test_images").iterdir())[0]
        whole = Path(tmp) / "whole"
        sizes = write_whole(work, whole)
        one = Path(tmp) / "one.txt"
        one.write_text(f"{image}\n")
        runs: dict[str, list[float]] = {"command": [], "shared": [], "per-task": [], "predict-now": [], "predict-before": [],
                                        "predict-command": []}
        models = 0
        for r in range(args.rounds):
            runs["command"].append(timed([*attrret, "attributes", str(image), "--workdir", str(work), "-q"]))
            runs["predict-now"].append(timed([py, __file__, "--child-predict", "now", str(work), str(image)]))
            runs["predict-before"].append(timed([py, __file__, "--child-predict", "before", str(whole), str(image)]))
            runs["predict-command"].append(timed([*attrret, "predict", "--images", str(one), "--workdir", str(work),
                                                  "--out", str(Path(tmp) / f"index{r}"), "-q"]))
            for mode in ("shared", "per-task"):
                out = subprocess.run([py, __file__, "--child", mode, str(work)], check=True, capture_output=True, text=True)
                got = json.loads(out.stdout.strip().splitlines()[-1])
                runs[mode].append(got["seconds"])
                models = got["models"]
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"One image, {models} task models (router included), default backbone and size; median of {args.rounds} "
          "interleaved rounds of fresh processes\n")
    print("| what | median s | best s |")
    print("|---|---:|---:|")
    print(f"| `attrret attributes IMAGE --workdir W` (whole process) | {med['command']:.2f} | {min(runs['command']):.2f} |")
    print(f"| model set-up, one model per front (now) | {med['shared']:.2f} | {min(runs['shared']):.2f} |")
    print(f"| model set-up, one model per task (before) | {med['per-task']:.2f} | {min(runs['per-task']):.2f} |")
    print(f"| predict start-up, one image: lean checkpoints, one model per front (now) | {med['predict-now']:.2f} | "
          f"{min(runs['predict-now']):.2f} |")
    print(f"| predict start-up, one image: whole checkpoints, one model per task (before) | {med['predict-before']:.2f} | "
          f"{min(runs['predict-before']):.2f} |")
    print(f"| `attrret predict --images ONE` (whole process, index written) | {med['predict-command']:.2f} | "
          f"{min(runs['predict-command']):.2f} |")
    print(f"\nmodel set-up: {med['per-task'] / med['shared']:.1f}x faster with one build per front; predict start-up "
          f"(one image): {med['predict-before'] / med['predict-now']:.1f}x faster")
    print(f"\ncheckpoint size per task (mean of {sizes['tasks']}): {sizes['lean'] / 2**20:.2f} MiB as written (lean: tail, "
          f"head and the front's identity) vs {sizes['whole'] / 2**20:.2f} MiB saved whole (every trunk tensor, the "
          f"previous format): {sizes['whole'] / sizes['lean']:.1f}x smaller")
    res = {**json_header("attributes"), "models": models, "rounds": runs, "median_s": med, "checkpoint_bytes": sizes}
    atomic_write_text(args.out, json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
