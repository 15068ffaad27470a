"""The paper's CelebA experiments (Sec. 5, Table 1), one command per task.

For a task (Smiling or Wearing_Earrings) and each sensitive set (Pale_Skin, Young, Blond_Hair,
Heavy_Makeup, combinations such as Pale_Skin+Young: one attribute vector each, the set
{z + sum_i t_i a_i : ||t|| <= eps}, Sec. 4.1 and the combined set of Sec. 5), the four method rows
of the authors' tables: the naive baseline (task loss only), data augmentation (N random points of
the set per sample, task loss only), adversarial, and adversarial + contrastive (Sec. 4.2). Each
encoder's test bundle is center-smoothed (Sec. 4.3) on every 64th test image, the consumer's
classifier trained with every sigma_cls of the sweep and verified (Algorithm 1); a row reports the
sigma_cls with the highest certified fairness among those within ``accuracy_slack`` of its best
accuracy (Sec. 5: "without major sacrifice in accuracy"), averaged over the seeds (the authors'
five). With ``endpoints`` the test bundles also certify each sample's segment end points and the
rows report "certified but empirically unfair" (the authors' endpoints analysis).

The data is the user's CelebA folder (``--data-root``, the official or the CSV layout, read by
:class:`lassi.regulator.datasets.CelebASource`) at the Glow's image size; the Glow is any Glow of
CelebA images, trained with ``lassi-regulator train-glow`` or imported (``import-glow``). Every
step is the roles' Python API: ``define_spec`` (regulator), ``train_encoder`` and ``encode_split``
(producer), the workspace's consumer run (``train_consumer_classifier`` and ``verify``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lassi.experiments.settings import CelebA, CelebAMethod, Settings, with_draws
from lassi.regulator.data_config import DatasetConfig, make_source
from lassi.spec import GlowArtifact, UsageError, read_artifact
from lassi.spec.contract.binding import read_spec_header
from lassi.spec.contract.io import read_header
from lassi.spec.contract.models import CenterSmoothingParams

if TYPE_CHECKING:  # the roles' modules import torch: loaded when an experiment runs
    from lassi.experiments.workspace import Workspace
    from lassi.producer.training import EncoderTrainConfig


def add_parser(sub: argparse._SubParsersAction, settings: Settings) -> None:
    """The ``celeba`` subcommand; defaults from ``settings.celeba``."""
    c = settings.celeba
    p = sub.add_parser("celeba", help="the paper's CelebA experiments (Table 1's design, four method rows)")
    p.add_argument("--data-root", type=Path, required=True, help="your CelebA folder (official or CSV layout)")
    p.add_argument(
        "--allow-symlinks-outside-root", action="store_true",
        help="read image links that leave --data-root (a link farm); off: every read stays inside it",
    )  # fmt: skip
    p.add_argument("--glow", type=Path, required=True, help="a Glow of CelebA images (train-glow or import-glow)")
    p.add_argument("--task", choices=c.tasks, default=c.tasks[0], help="the encoder's and consumer's task")
    p.add_argument(
        "--sensitive", nargs="+", default=list(c.sensitive_sets),
        help="sensitive sets, one spec each; A+B is one set over both attributes' vectors "
        f"(default: {' '.join(c.sensitive_sets)})",
    )  # fmt: skip
    p.add_argument(
        "--methods", nargs="+", choices=list(c.methods), default=list(c.methods), help="method rows"
    )
    p.add_argument("--sigmas", type=float, nargs="+", default=list(c.sigmas), help="sigma_cls sweep")
    p.add_argument("--seeds", type=int, nargs="+", default=list(c.seeds), help="one encoder per seed")
    p.add_argument("--test", type=int, default=None, help="at most this many certified test images")
    p.add_argument("--every", type=int, default=c.every, help="certify every N-th test image")
    p.add_argument("--epochs", type=int, default=c.encoder.epochs, help="encoder epochs")
    p.add_argument(
        "--max-train", type=int, default=None,
        help="cap the encoder's training images (and the plain train bundle the consumer trains on)",
    )  # fmt: skip
    p.add_argument(
        "--spec-images", type=int, default=None,
        help="compute the attribute vectors over at most this many train images (lassi-regulator "
        "define --max-images; default: the whole train split)",
    )  # fmt: skip
    p.add_argument(
        "--consumer-epochs", type=int, default=c.consumer_epochs,
        help=f"epochs of the consumer's C_L (default {c.consumer_epochs}, the authors')",
    )  # fmt: skip
    p.add_argument(
        "--hidden", type=int, nargs="+", default=list(c.encoder.hidden),
        help=f"MLP widths of E_L (default {' '.join(map(str, c.encoder.hidden))})",
    )  # fmt: skip
    p.add_argument("--k", type=int, default=c.encoder.k, help=f"representation size (default {c.encoder.k})")
    p.add_argument(
        "--endpoints", action="store_true",
        help="also certify each sample's segment end points z ± eps·a_i and report 'certified but "
        "empirically unfair' (2m more center smoothings per sample)",
    )  # fmt: skip
    p.add_argument("--cert-n", dest="cs_n", type=int, default=None, help="center smoothing n (and n0)")
    p.add_argument("--cert-n0", dest="cs_n0", type=int, default=None, help="center smoothing n0")
    p.add_argument(
        "--verify-n", dest="rs_n", type=int, default=None,
        help="randomized smoothing n (n0 = n / 50, at least 100)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument(
        "--out", type=Path, default=Path("runs/experiments"),
        help="experiments folder (default runs/experiments); one per Glow",
    )  # fmt: skip
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")


def celeba_data(glow: Path, root: Path, allow_symlinks_outside_root: bool = False) -> DatasetConfig:
    """The user's CelebA folder at the Glow's image size (any layout CelebASource reads); reads
    stay inside ``root`` unless ``allow_symlinks_outside_root``."""
    meta, _, _ = read_header(glow, expect=GlowArtifact)
    recorded = meta.data.dataset if meta.data is not None else None
    if recorded not in (None, "celeba"):
        print(f"note: {glow} was trained on {recorded} data; running on CelebA at {root}", file=sys.stderr)
    return DatasetConfig(
        dataset="celeba", root=root, image_size=meta.flow.image_size,
        allow_symlinks_outside_root=allow_symlinks_outside_root,
    )  # fmt: skip


def check_names(source, task: str, sensitive: list[str]) -> None:
    """Every name is one of the folder's attributes and no sensitive set holds the task."""
    names = set(source.attribute_names)
    for name in [task, *(a for s in sensitive for a in s.split("+"))]:
        if name not in names:
            raise UsageError(None, f"'{name}' is not a CelebA attribute of {source.attribute_file}")
    for s in sensitive:
        if task in s.split("+"):
            raise UsageError(None, f"--sensitive {s} holds the task {task}")


def celeba_spec(
    ws: Workspace, glow: Path, data: DatasetConfig, sensitive: str, images: int | None, n_train: int
) -> Path:
    """The regulator's spec over ``sensitive`` (average-difference vectors over the first
    ``images`` of the ``n_train`` train images, all by default; eps from the settings), made once
    per experiments folder and bound to ``glow``."""
    suffix = "" if images is None else f"-images{images}"
    out = ws.out / "celeba" / f"spec-{sensitive}{suffix}.safetensors"
    if out.exists():
        from lassi.experiments.reuse import refuse_other_settings, spec_settings
        from lassi.experiments.workspace import check_glow

        meta = read_spec_header(out)[0]
        check_glow(out, meta, glow)
        wanted = data.provenance("train", min(images or n_train, n_train))
        refuse_other_settings(
            out, spec_settings(meta, sensitive.split("+"), "halves", None, ws.settings.celeba.epsilon, wanted)
        )
        return out
    from lassi.regulator.similarity import define_spec

    out.parent.mkdir(parents=True, exist_ok=True)
    define_spec(
        glow, sensitive.split("+"), ws.settings.celeba.epsilon, data, out, max_images=images,
        vectors="halves", device=ws.device,
    )  # fmt: skip
    return out


def method_config(
    c: CelebA, method: str, task: str, sensitive: str, data: DatasetConfig, seed: int,
    args: argparse.Namespace,
) -> EncoderTrainConfig:  # fmt: skip
    """The encoder of one row: the method's losses (lambda_adv overridden where the authors'
    script does), its augmentation draws, the MLP (``args.hidden``, ``args.k``) and the
    settings' schedule (``args.epochs``, ``args.max_train``)."""
    from lassi.producer.training import EncoderTrainConfig

    m: CelebAMethod = c.methods[method]
    loss = m.loss
    override = c.adv_overrides.get(f"{task}/{sensitive}")
    if override is not None and loss.adv > 0:
        loss = loss.model_copy(update={"adv": override})
    e = c.encoder
    return EncoderTrainConfig(
        architecture="latent_mlp", hidden=list(args.hidden), k=args.k, task=task, loss=loss,
        epochs=args.epochs, batch_size=e.batch_size, lr=e.lr, seed=seed, data=data,
        max_train=args.max_train, keep=e.keep, augment=m.augment,
    )  # fmt: skip


def producer_run(
    ws: Workspace, config: EncoderTrainConfig, spec: Path, run: Path, test_folder: Path,
    cert: CenterSmoothingParams, every: int, limit: int | None, endpoints: bool,
) -> tuple[Path, Path]:  # fmt: skip
    """Encoder, plain train bundle and certified test bundle of one row and seed (each reused
    when present and made with the same settings, refused when made with others)."""
    run.mkdir(parents=True, exist_ok=True)
    test_folder.mkdir(parents=True, exist_ok=True)
    encoder = ws.encoder_run(config, spec, run / "encoder.safetensors")
    train = ws.bundle_run(spec, encoder, config.data, "train", run / "train.safetensors", limit=config.max_train)
    test = ws.bundle_run(
        spec, encoder, config.data, "test", test_folder / "test.safetensors", limit=limit, every=every,
        cert=cert, seed=config.seed, endpoints=endpoints,
    )  # fmt: skip
    return train, test


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


FIGURES = ("accuracy", "certified_fairness", "certified_fair_and_accurate", "certified_but_empirically_unfair")


def aggregate(sigma: float, per_seed: list[dict]) -> dict:
    """One sweep point: each figure's mean (and sample std over seeds, as the authors report)."""
    point: dict = {"sigma": sigma}
    for name in FIGURES:
        values = [r[name] for r in per_seed if r.get(name) is not None]
        if values:
            point[name] = _mean(values)
            point[f"{name}_std"] = _std(values)
    point["seeds"] = per_seed
    return point


def choose(sweep: list[dict], slack: float) -> dict:
    """The sweep point with the best certified fairness among those within ``slack`` of the
    best accuracy (Sec. 5)."""
    best = max(r["accuracy"] for r in sweep)
    return max((r for r in sweep if r["accuracy"] >= best - slack), key=lambda r: r["certified_fairness"])


def variant_names(c: CelebA, args: argparse.Namespace, cert: CenterSmoothingParams, verify: dict) -> tuple[str, str]:
    """Suffixes of the run folders (training) and of their test folders (certification) for
    options differing from the settings; the defaults keep the plain names."""
    train = "" if args.epochs == c.encoder.epochs else f"-epochs{args.epochs}"
    train += "" if args.max_train is None else f"-train{args.max_train}"
    train += "" if args.spec_images is None else f"-spec{args.spec_images}"
    if (list(args.hidden), args.k) != (list(c.encoder.hidden), c.encoder.k):
        train += f"-mlp{'x'.join(map(str, args.hidden))}-k{args.k}"
    test = "" if args.every == c.every else f"-every{args.every}"
    test += "" if args.test is None else f"-n{args.test}"
    test += "" if (cert.n0, cert.n) == (c.cert.n0, c.cert.n) else f"-cert{cert.n0}x{cert.n}"
    test += "" if verify == c.verify else f"-rs{verify['n']}"
    test += "-endpoints" if args.endpoints else ""
    return train, test


def _percent(point: dict, name: str) -> str:
    if point.get(name) is None:
        return "–"
    std = point.get(f"{name}_std")
    return f"{100 * point[name]:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")


def markdown(rows: list[dict], endpoints: bool) -> str:
    head = "| sensitive | method | sigma_cls | accuracy % | certified fair % | fair & accurate % |"
    rule = "| --- | --- | --- | --- | --- | --- |"
    if endpoints:
        head += " certified but empirically unfair % |"
        rule += " --- |"
    lines = [head, rule]
    for row in rows:
        c = row["chosen"]
        line = (
            f"| {row['sensitive']} | {row['method']} | {c['sigma']} | {_percent(c, 'accuracy')} "
            f"| {_percent(c, 'certified_fairness')} | {_percent(c, 'certified_fair_and_accurate')} |"
        )
        lines.append(line + (f" {_percent(c, 'certified_but_empirically_unfair')} |" if endpoints else ""))
    return "\n".join(lines)


def celeba(ws: Workspace, args: argparse.Namespace) -> dict:
    """Every sensitive set of ``args.sensitive`` with every method of ``args.methods``, each
    with the sigma_cls sweep over ``args.seeds``; the results dict the CLI writes."""
    c = ws.settings.celeba
    numbers = [("--every", args.every), ("--epochs", args.epochs), ("--test", args.test), ("--k", args.k),
               ("--consumer-epochs", args.consumer_epochs)]  # fmt: skip
    for name, value in numbers + [("--hidden", h) for h in args.hidden]:
        if value is not None and value < 1:
            raise UsageError(None, f"{name} must be at least 1, got {value}")
    for name, value in (("--max-train", args.max_train), ("--spec-images", args.spec_images),
                        ("--cert-n", args.cs_n), ("--cert-n0", args.cs_n0), ("--verify-n", args.rs_n)):  # fmt: skip
        if value is not None and value < 1:
            raise UsageError(None, f"{name} must be at least 1, got {value}")
    if any(seed < 0 for seed in args.seeds):
        raise UsageError(None, "--seeds must be non-negative")
    for name, values in (("--sensitive", args.sensitive), ("--methods", args.methods),
                         ("--sigmas", args.sigmas), ("--seeds", args.seeds)):  # fmt: skip
        if len(set(values)) != len(values):
            raise UsageError(None, f"{name} lists a value twice")
    if any(not s > 0 for s in args.sigmas):
        raise UsageError(None, "--sigmas must all be positive")
    cert = c.cert
    if args.cs_n is not None or args.cs_n0 is not None:
        n = args.cs_n or cert.n
        cert = with_draws(cert, args.cs_n0 or args.cs_n or cert.n0, n)
    verify = c.verify if args.rs_n is None else c.verify | {"n0": max(100, args.rs_n // 50), "n": args.rs_n}
    data = celeba_data(args.glow, args.data_root, args.allow_symlinks_outside_root)
    source = make_source(data)
    check_names(source, args.task, args.sensitive)
    n_train = len(source.split_ids("train"))
    train_variant, test_variant = variant_names(c, args, cert, verify)
    folder = ws.out / "celeba"
    rows = []
    for sensitive in args.sensitive:
        spec = celeba_spec(ws, args.glow, data, sensitive, args.spec_images, n_train)
        for method in args.methods:
            by_sigma: dict[float, list[dict]] = {s: [] for s in args.sigmas}
            encoders = []
            for seed in args.seeds:
                config = method_config(c, method, args.task, sensitive, data, seed, args)
                run = folder / args.task / f"{sensitive}-{method}-seed{seed}{train_variant}"
                test_folder = run / f"test{test_variant}"
                train, test = producer_run(
                    ws, config, spec, run, test_folder, cert, args.every, args.test, args.endpoints
                )
                encoders.append(str(run / "encoder.safetensors"))
                for sigma in args.sigmas:
                    result = ws.consumer_run(
                        spec, train, test, args.task, sigma, test_folder, seed,
                        epochs=args.consumer_epochs, verify_params=verify,
                    )  # fmt: skip
                    report = read_artifact(result["report"]).meta
                    check = report.endpoint_check
                    if check is not None:
                        result["certified_empirically_unfair"] = check.certified_empirically_unfair
                        result["certified_but_empirically_unfair"] = (
                            check.certified_empirically_unfair / result["n"] if result["n"] else 0.0
                        )
                    by_sigma[sigma].append(result | {"seed": seed})
            sweep = [aggregate(s, results) for s, results in by_sigma.items()]
            chosen = choose(sweep, c.accuracy_slack)
            m = c.methods[method]
            rows.append({
                "task": args.task, "sensitive": sensitive, "attributes": sensitive.split("+"),
                "method": method, "augment": m.augment, "loss": config.loss.model_dump(),
                "sigma_cls_default": m.sigma_cls, "chosen": chosen, "sweep": sweep,
                "encoders": encoders,
            })  # fmt: skip
            print(
                f"{args.task} / {sensitive} {method}: sigma {chosen['sigma']} acc "
                f"{chosen['accuracy']:.3f} cert {chosen['certified_fairness']:.3f}"
            )
    every_set = list(args.sensitive) == list(c.sensitive_sets)
    every_method = list(args.methods) == list(c.methods)
    name = args.task + train_variant + test_variant
    if not every_set:
        name += "-" + "-".join(args.sensitive)
    if not every_method:
        name += "-" + "-".join(args.methods)
    seeds = "" if list(args.seeds) == list(c.seeds) else "-seeds" + "_".join(map(str, args.seeds))
    return {
        "task": args.task,
        "glow_sha256": read_header(args.glow, expect=GlowArtifact)[2],
        "seeds": list(args.seeds),
        "sigmas": list(args.sigmas),
        "certificate": cert.model_dump(exclude={"seed", "m"}),
        "randomized_smoothing": verify,
        "every": args.every,
        "rows": rows,
        "markdown": markdown(rows, args.endpoints),
        "folder": folder.name,
        "results_file": f"results-{name}{seeds}.json",
        "figure": f"celeba_sigma-{name}{seeds}.png" if every_set else None,
    }
