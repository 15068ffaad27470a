"""The device check's driver: ``pytest -m gpu`` and the paper-size benchmarks, one JSON of results.

Run by ``benchmarks/gpu_check.sh`` (which first installs the project over the machine's own CUDA
torch); each step is a subprocess with its own timeout, so one slow or failing step leaves the
others' figures. Steps on a CUDA machine (about 8 minutes in all):

1. ``pytest -m gpu tests/spec/test_device.py`` (every heavy command with --device cuda against cpu);
2. the image path E_L ∘ D_G (bench_image_path.py) at the demo's and the paper's sizes
   (64×64, L = 4, K = 32, hidden 512; ResNet-18), strict float32 and TF32, and one real
   certification at n0 = 5000, n = 2000 (target ≤ 2 s per certified sample; paper: 64 s on four
   RTX 2080 Ti);
3. the latent path: center smoothing of the authors' latent MLP at n0 = n = 10⁴ (target ≤ 0.05 s);
4. Glow training throughput at the paper's size (target ≥ 500 images/s on one H100).

Without CUDA, or with ``--dry-run``, the same steps run on the CPU at tiny sizes to check the
plumbing, the pytest step is skipped, and the results table says "not run: no GPU" instead of any
figure (the dry run's own timings stay in the raw JSON, marked ``dry_run``).

    python benchmarks/gpu_check.py [--dry-run] [--out benchmarks/out/gpu_check.json]
        [--results docs/results/gpu_check.json]
    python benchmarks/gpu_check.py --from-raw RAW.json [--results docs/results/gpu_check.json]
    python benchmarks/gpu_check.py --requirements [--missing]

``--from-raw`` rewrites the results table from a raw JSON a run wrote (a device run's, brought
back), without running anything; a report without a commit (a device machine's copy of the tree
has no git) gets this checkout's. ``--requirements`` prints the project's runtime requirements
besides torch (from the packages' pyproject.toml files, one per line; with ``--missing`` only
those this interpreter does not satisfy), for gpu_check.sh's offline install.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
NOT_RUN = "not run: no GPU"
PAPER_SECONDS = "64 s per sample on four RTX 2080 Ti (Sec. 5)"
# Seconds allowed per step on a GPU: at most 430 s of steps, the whole check (the install and
# the interpreters' starts included) about 8 minutes even when every step times out. pytest
# builds the tests' tiny chain on the CPU first (139 s on this project's loaded 2-core CPU).
TIMEOUTS = {"pytest_gpu": 180, "image_path": 150, "latent_path": 40, "glow_train": 60}
DRY_TIMEOUT = 300
# The packages whose runtime requirements the check needs (experiments/ is not used), and the
# extras it needs of them: onnxruntime (either build) and the test runner's.
PACKAGES = ("spec_schema", "regulator", "producer", "consumer")
EXTRAS = ("cpu", "test")
NOT_NEEDED = {"torch", "ruff", "ray"}  # torch: the machine's own; ruff, ray: not used here
STEPS = ("pytest_gpu", "image_path", "latent_path", "glow_train")


def _sibling(name: str) -> ModuleType:
    """Another benchmark of this folder, imported from its file (no sys.path change)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _step(name: str, cmd: list[str], timeout: float, threads: int | None = None) -> dict[str, Any]:
    """Run one step; its result JSON (the last stdout line starting with '{') or the failure.
    ``threads``: OMP_NUM_THREADS of the step (the dry run uses 1: on a shared CPU, OpenMP
    workers waiting for each other can slow tiny models a hundredfold)."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired as error:
        tail = (error.stdout or b"")[-2000:]
        tail = tail.decode(errors="replace") if isinstance(tail, bytes) else tail
        return {"step": name, "status": f"timeout after {timeout:.0f} s", "output_tail": tail}
    seconds = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = {"step": name, "seconds": round(seconds, 2), "returncode": proc.returncode}
    if lines:
        try:
            result["result"] = json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    result["status"] = "ok" if proc.returncode == 0 else "failed"
    if proc.returncode != 0 or "result" not in result:
        result["output_tail"] = (proc.stdout + proc.stderr)[-2000:]
    return result


def latent_path(device: str, n0: int, n: int, samples: int, tiny: bool = False) -> dict[str, Any]:
    """Center smoothing of the authors' latent MLP (bench_center_smoothing's setting: D = 12288,
    (2048, 1024) -> 512) on device; ``tiny``: D = 64, (32,) -> 16 (dry runs)."""
    import torch

    from lassi.producer.base_function import BaseFunction
    from lassi.regulator.encoders import LatentMLP
    from lassi.spec.contract.models import CenterSmoothingParams
    from lassi.spec.runtime.center_smoothing import CenterSmoothing

    dev = torch.device(device)
    if tiny:
        torch.manual_seed(0)
        encoder = LatentMLP(64, (32,), 16).eval()
        z_g, attrs = torch.randn(64), 0.05 * torch.randn(1, 64)
    else:
        bench = _sibling("bench_center_smoothing")
        encoder = bench.make_encoder()
        z_g, attrs = bench.make_sample(1)
    encoder = encoder.to(dev)
    base = BaseFunction(encoder, attrs.to(dev)).for_latent(z_g.to(dev))
    delta = 0.05 if n0 >= 2_000 else 0.2
    params = CenterSmoothingParams(n0=n0, n=n, delta=delta, epsilon=1.0 if n >= 1_000 else 0.1)
    CenterSmoothing(base, 1, params).certify(0, 10_000)  # warm-up
    certs = [CenterSmoothing(base, 1, params).certify(0, i) for i in range(samples)]
    done = [c.seconds for c in certs if not c.abstained]
    return {
        "device": str(dev),
        "n0": n0,
        "n": n,
        "samples": samples,
        "certified": len(done),
        "seconds_per_sample": sum(c.seconds for c in certs) / samples,
        "seconds_per_certified_sample": sum(done) / len(done) if done else None,
    }


def glow_train(device: str, size: str, batch: int, steps: int) -> dict[str, Any]:
    """Training images/s of a random-initialised Glow (Adam 1e-3, clipping 50)."""
    import torch

    from lassi.regulator.glow import Glow
    from lassi.regulator.training import optimisation_step

    dev = torch.device(device)
    cfg = _sibling("bench_image_path").SIZES[size]
    torch.manual_seed(0)
    glow = Glow(cfg["image_size"], cfg["n_levels"], cfg["n_steps"], cfg["hidden"]).to(dev)
    x = torch.rand(batch, 3, cfg["image_size"], cfg["image_size"], device=dev) - 0.5
    glow.initialize_actnorm(x)
    glow.train()
    optimizer = torch.optim.Adam(glow.parameters(), lr=1e-3)
    for _ in range(2):
        optimisation_step(glow, optimizer, x, 50.0)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    start = time.perf_counter()
    for _ in range(steps):
        bpd = optimisation_step(glow, optimizer, x, 50.0)
    float(bpd)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    memory = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
    return {
        "device": str(dev),
        "size": size,
        "config": cfg,
        "batch": batch,
        "steps": steps,
        "images_per_s": batch * steps / seconds,
        "tf32_convolutions": bool(torch.backends.cudnn.allow_tf32) if dev.type == "cuda" else None,
        "max_memory_gib": memory,
    }


def environment() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
    info["commit"] = _commit()
    return info


def _commit() -> str:
    """The checkout's short commit, "" where there is no git or no repository (a device
    machine gets a copy of the working tree)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
            timeout=20, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def run_check(dry_run: bool, save=None) -> dict[str, Any]:
    """All steps; ``dry_run``: tiny sizes on the CPU, no pytest. ``save(report)`` is called
    after each step, so a check stopped from outside leaves the steps it finished."""
    env = environment()
    gpu = env["cuda_available"] and not dry_run
    dry = not gpu
    report: dict[str, Any] = {"dry_run": dry, "environment": env, "steps": []}
    if dry:
        report["note"] = (
            "dry run: " + ("--dry-run given" if env["cuda_available"] else "CUDA is absent")
            + "; CUDA parts skipped, the other steps at tiny sizes on the CPU"
        )
    py = sys.executable
    threads = 1 if dry else None
    steps = report["steps"]

    def timeout(name: str) -> float:
        return DRY_TIMEOUT if dry else TIMEOUTS[name]

    def add(result: dict[str, Any]) -> None:
        steps.append(result)
        if save is not None:
            save(report)

    if dry:
        add({"step": "pytest_gpu", "status": "skipped: CUDA is absent (dry run)"})
    else:
        junit = Path(tempfile.mkdtemp()) / "gpu.xml"
        result = _step(
            "pytest_gpu",
            [py, "-m", "pytest", "-q", "-m", "gpu", "tests/spec/test_device.py", f"--junitxml={junit}"],
            timeout("pytest_gpu"),
        )
        result["summary"] = _junit_summary(junit)
        add(result)

    with tempfile.TemporaryDirectory() as tmp:
        if dry:
            args = ["--sizes", "tiny", "--draws", "8", "--batch", "4", "--no-variants",
                    "--certify", "64,32", "--device", "cpu", "--peak-size", "256",
                    "--settings", "64,32"]  # fmt: skip
        else:
            args = ["--sizes", "demo,paper", "--draws", "512", "--batch", "256",
                    "--certify", "5000,2000", "--device", "cuda"]  # fmt: skip
        add(
            _step(
                "image_path",
                [py, str(HERE / "bench_image_path.py"), *args, "--out", tmp, "--json-line"],
                timeout("image_path"),
                threads,
            )
        )

    device = "cuda" if gpu else "cpu"
    n0, n, samples = (10_000, 10_000, 5) if gpu else (200, 200, 1)
    latent = {"device": device, "n0": n0, "n": n, "samples": samples, "tiny": dry}
    size, batch, train_steps = ("paper", 64, 10) if gpu else ("tiny", 4, 2)
    train = {"device": device, "size": size, "batch": batch, "steps": train_steps}
    for name, kwargs in (("latent_path", latent), ("glow_train", train)):
        add(
            _step(
                name,
                [py, str(Path(__file__).resolve()), "--step", name, "--kwargs", json.dumps(kwargs)],
                timeout(name),
                threads,
            )
        )
    return report


def _junit_summary(path: Path) -> dict[str, int] | None:
    """Counts of a pytest junit XML (tests, failures, errors, skipped), None if absent."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    if suite is None:
        return None
    return {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}


def _fmt(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def results_table(report: dict[str, Any], command: str, results_file: str) -> dict[str, Any]:
    """The report in the generic results-table format; every value is "not run: no GPU" unless
    the check ran on a GPU."""
    env = report["environment"]
    by_step = {s["step"]: s for s in report["steps"]}
    ran = not report["dry_run"]
    unfinished = [name for name in STEPS if name not in by_step]

    def value(step: str, pick) -> Any:
        if not ran:
            return NOT_RUN
        s = by_step.get(step, {})
        if "result" not in s and step != "pytest_gpu":
            return s.get("status", "not run")
        try:
            return pick(s)
        except (KeyError, TypeError, IndexError, ZeroDivisionError):
            return s.get("status", "not run")

    def image(s: dict[str, Any], size: str) -> dict[str, Any]:
        return next(x for x in s["result"]["sizes"] if x["size"] == size)

    def variant(s: dict[str, Any], size: str, name: str) -> dict[str, Any]:
        return next(v for v in image(s, size)["variants"] if v["name"].startswith(name))

    def pytest_value(s: dict[str, Any]) -> str:
        summary = s.get("summary")
        if not summary:
            return s["status"]
        failed = summary["failures"] + summary["errors"]
        passed = summary["tests"] - failed - summary["skipped"]
        return f"{passed} passed, {failed} failed, {summary['skipped']} skipped"

    rows = [
        ["pytest -m gpu (tests/spec/test_device.py)", value("pytest_gpu", pytest_value), "all pass", None],
        [
            "image path, paper size: s per certified sample, n0 = 5000, n = 2000 (float32)",
            value("image_path", lambda s: _fmt(image(s, "paper")["certify"]["seconds"])),
            "≤ 2",
            PAPER_SECONDS,
        ],
        [
            "image path, paper size: decode ms / image (float32)",
            value("image_path", lambda s: _fmt(1e3 * variant(s, "paper", "baseline")["decode_s"])),
            None,
            None,
        ],
        [
            "image path, paper size: encoder ms / image (float32)",
            value("image_path", lambda s: _fmt(1e3 * variant(s, "paper", "baseline")["encoder_s"])),
            None,
            None,
        ],
        [
            "image path, paper size: decode GFLOP/s (float32) / matmul peak GFLOP/s",
            value(
                "image_path",
                lambda s: f"{variant(s, 'paper', 'baseline')['decode_gflops']:.0f} / "
                f"{s['result']['matmul_peak_gflops']:.0f}",
            ),
            None,
            None,
        ],
        [
            "image path, paper size: ms / image with TF32 (not the certified float32 function)",
            value("image_path", lambda s: _fmt(1e3 * variant(s, "paper", "tf32")["per_image_s"])),
            None,
            None,
        ],
        [
            "image path, demo size: s per certified sample, n0 = 5000, n = 2000",
            value("image_path", lambda s: _fmt(image(s, "demo")["certify"]["seconds"])),
            None,
            None,
        ],
        [
            "latent path: s per certified sample, n0 = n = 10⁴",
            value("latent_path", lambda s: _fmt(s["result"]["seconds_per_certified_sample"])),
            "≤ 0.05",
            PAPER_SECONDS,
        ],
        [
            "Glow training, paper size, batch 64: images / s",
            value("glow_train", lambda s: _fmt(s["result"]["images_per_s"])),
            "≥ 500 (one H100)",
            None,
        ],
    ]
    hardware = (
        f"{env.get('gpu', 'no GPU')}, torch {env.get('torch', '?')}, "
        f"{env.get('cpu_count', '?')} CPU cores"
    )
    notes = [
        "Written by benchmarks/gpu_check.sh, which installs the project over the machine's own "
        "CUDA torch and runs each step with its own timeout (about 8 minutes in all).",
    ]
    if not ran:
        notes.append(
            "No GPU was available when this file was written: the check ran in its dry mode (tiny "
            "sizes on the CPU, to test the plumbing) and no figure is reported. Run "
            "benchmarks/gpu_check.sh on a CUDA machine to fill the table."
        )
    else:
        notes.append(
            "Certification runs in strict float32 on CUDA (TF32 off), the function the ONNX export "
            "and the audit replay; the TF32 row shows the cost of that choice."
        )
        if unfinished:
            notes.append(
                "The check was stopped before these steps ran: " + ", ".join(unfinished) + "."
            )
    return {
        "title": "The paper's sizes on one GPU (device check)",
        "order": 64,
        "intro": (
            "The image path E_L ∘ D_G and the latent path of center smoothing, Glow training at "
            "64×64, L = 4, K = 32, hidden 512, and the GPU-marked tests, on one CUDA device."
        ),
        "columns": ["quantity", "measured", "target", "paper"],
        "rows": rows,
        "provenance": {
            "command": command,
            "commit": env.get("commit") or "not recorded (no git repository where it ran)",
            "results_file": results_file,
            "hardware": hardware,
        },
        "notes": notes,
    }


def _write(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(path)


def _shown(path: Path) -> str:
    """A path as the table names it: relative to the repository where it lies inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


class CheckError(Exception):
    """Bad input to this script: one line, exit status 2."""


def read_raw(path: Path) -> dict[str, Any]:
    """A raw report written by a run (``--out``), checked for the fields the table reads."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckError(f"{path}: not a readable JSON file: {error}") from error
    if not isinstance(report, dict):
        raise CheckError(f"{path}: not a raw report of gpu_check.py (a JSON object expected)")
    if not isinstance(report.get("dry_run"), bool):
        raise CheckError(f"{path}: not a raw report of gpu_check.py (no boolean 'dry_run')")
    if not isinstance(report.get("environment"), dict):
        raise CheckError(f"{path}: not a raw report of gpu_check.py (no 'environment' object)")
    steps = report.get("steps")
    if not isinstance(steps, list) or not all(
        isinstance(x, dict) and isinstance(x.get("step"), str) and isinstance(x.get("status"), str)
        for x in steps
    ):
        raise CheckError(f"{path}: 'steps' must be a list of objects with 'step' and 'status'")
    unknown = sorted({x["step"] for x in steps} - set(STEPS))
    if unknown:
        raise CheckError(f"{path}: unknown steps {unknown}; this script's steps are {list(STEPS)}")
    return report


# ---------------------------------------------------------------- the offline install's needs


def _requirement_lines() -> list[str]:
    """The runtime requirements of PACKAGES and their EXTRAS, torch and the lassi packages left
    out, each once (as written in the pyproject.toml files)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError as error:
            raise CheckError("--requirements needs Python >= 3.11 (tomllib) or tomli") from error
    seen: dict[str, str] = {}
    for package in PACKAGES:
        project = tomllib.loads((ROOT / package / "pyproject.toml").read_text())["project"]
        lines = list(project.get("dependencies", []))
        for extra in EXTRAS:
            lines += project.get("optional-dependencies", {}).get(extra, [])
        for line in lines:
            name = _name(line)
            if name.startswith("lassi-") or name in NOT_NEEDED or ";" in line:
                continue
            seen.setdefault(name, line.strip())
    return list(seen.values())


def _name(requirement: str) -> str:
    """The normalised distribution name of a requirement line."""
    import re

    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise CheckError(f"cannot read the requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _satisfied(requirement: str) -> bool:
    """Whether this interpreter has a distribution meeting ``requirement`` (the onnxruntime
    requirement is met by onnxruntime-gpu as well: both provide the module)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        from packaging.requirements import Requirement
    except ModuleNotFoundError:
        try:
            from pip._vendor.packaging.requirements import Requirement
        except ModuleNotFoundError:  # no packaging at all: presence only
            Requirement = None  # noqa: N806
    name = _name(requirement)
    for candidate in (name, "onnxruntime-gpu") if name == "onnxruntime" else (name,):
        try:
            found = version(candidate)
        except PackageNotFoundError:
            continue
        if Requirement is None or Requirement(requirement).specifier.contains(found, prereleases=True):
            return True
    return False


def requirements(missing_only: bool = False) -> list[str]:
    """``_requirement_lines``, or with ``missing_only`` those this interpreter does not meet."""
    lines = _requirement_lines()
    return [line for line in lines if not _satisfied(line)] if missing_only else lines


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, no pytest")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "gpu_check.json",
                        help="the raw report (rewritten after each step)")  # fmt: skip
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "results" / "gpu_check.json",
                        help="the results page's table")  # fmt: skip
    parser.add_argument("--from-raw", type=Path, default=None, metavar="RAW",
                        help="only rewrite the table from this raw report")  # fmt: skip
    parser.add_argument("--requirements", action="store_true",
                        help="print the runtime requirements besides torch, one per line")  # fmt: skip
    parser.add_argument("--missing", action="store_true",
                        help="with --requirements: only those this interpreter lacks")  # fmt: skip
    parser.add_argument("--step", choices=("latent_path", "glow_train"), help=argparse.SUPPRESS)
    parser.add_argument("--kwargs", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        if args.requirements:
            lines = requirements(args.missing)
            if lines:
                print("\n".join(lines))
            return None
        if args.step:  # one step, in its own process (run_check's subprocess)
            step = {"latent_path": latent_path, "glow_train": glow_train}[args.step]
            print(json.dumps(step(**json.loads(args.kwargs))))
            return None
        if args.from_raw is not None:
            report = read_raw(args.from_raw)
            # a device machine's copy of the tree has no git: the commit of the checkout here
            report["environment"]["commit"] = report["environment"].get("commit") or _commit()
            table = results_table(report, "bash benchmarks/gpu_check.sh", _shown(args.from_raw))
            _write(args.results, table)
            print(f"wrote {args.results} from {args.from_raw}")
            return report
    except CheckError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        raise SystemExit(2) from None

    start = time.perf_counter()
    command = "bash benchmarks/gpu_check.sh"

    def save(report: dict[str, Any]) -> None:
        report["seconds"] = round(time.perf_counter() - start, 1)
        _write(args.out, report)
        _write(args.results, results_table(report, command, _shown(args.out)))

    report = run_check(args.dry_run, save)
    save(report)
    for step in report["steps"]:
        print(f"{step['step']}: {step['status']}" + (f" ({step['seconds']} s)" if "seconds" in step else ""))
    if report["dry_run"]:
        print(report["note"])
    print(f"wrote {args.out} and {args.results} in {report['seconds']} s")
    return report


if __name__ == "__main__":
    main()
