"""Small valid artifacts of every kind, for contract, corpus and CLI tests, and the other
builders every test folder shares: forged files, one-line error checks, child processes.

Why one long module: it is the one place shared test builders live (no test imports another).
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from lassi.regulator.shapes3d import renderer_sha256
from lassi.spec import (
    AttributeInfo,
    CenterSmoothingParams,
    CertificateScope,
    Checkpoint,
    ClassifierCard,
    ClassifierTraining,
    DataProvenance,
    EncoderCard,
    EncoderTraining,
    GlowArtifact,
    GlowConfig,
    GlowTraining,
    LossWeights,
    Preprocessing,
    ReportSummary,
    RepresentationBundle,
    SimilaritySpec,
    SmoothingParams,
    VerificationReport,
)

HASH_A = "a" * 64
HASH_B = "b" * 64
FLOW = GlowConfig(image_size=8, n_levels=2, n_steps=1, hidden=4)
# rendered 3D Shapes at the default image size, as this machine renders it
PROVENANCE = DataProvenance(
    dataset="shapes3d", n_samples=10, seed=1, options={"renderer_sha256": renderer_sha256(64)}
)
CERT = CenterSmoothingParams(
    sigma=0.65, epsilon=1.0, n0=100, n=100, alpha1=0.005, alpha2=0.005, delta=0.05,
    bounds="hoeffding", seed=0, m=1
)

ROOT = Path(__file__).resolve().parents[1]  # the repository
TEST_DATA = Path(__file__).resolve().parent / "data"  # reference files committed for the tests


def glow_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Stand-in ``glow.`` tensors with as many weights, in as many tensors, as a Glow of FLOW
    has (what ``lassi.spec.contract.architecture.check_glow`` checks on read)."""
    from lassi.spec.contract.architecture import glow_weight_count

    elements, count = glow_weight_count(
        FLOW.image_size, FLOW.n_levels, FLOW.n_steps, FLOW.hidden, FLOW.coupling
    )
    sizes = [1] * (count - 1) + [elements - (count - 1)]
    return {f"glow.w{i}": rng.normal(size=(size,)).astype(np.float32) for i, size in enumerate(sizes)}


def make(kind: str, n: int = 5, k: int = 4) -> tuple:
    """(metadata, tensors) of a small valid artifact of ``kind``."""
    rng = np.random.default_rng(0)
    tool = "lassi-test 0"
    if kind == "glow":
        meta = GlowArtifact(
            tool=tool,
            flow=FLOW,
            preprocessing=Preprocessing(image_size=8),
            data=PROVENANCE,
            training=GlowTraining(
                steps=1, batch_size=2, lr=1e-3, warmup_steps=0, seed=0, seconds=0.1
            ),
        )
        return meta, glow_weights(rng)
    if kind == "similarity_spec":
        attr = AttributeInfo(
            name="orientation",
            num_values=15,
            positive="high",
            negative="low",
            n_positive=5,
            n_negative=5,
            vector_norm=1.5,
            vector_names=["orientation"],
        )
        meta = SimilaritySpec(
            tool=tool,
            flow=FLOW,
            preprocessing=Preprocessing(image_size=8),
            data=PROVENANCE,
            attributes=[attr],
            epsilon=1.0,
            parents={"glow": HASH_A},
        )
        return meta, {
            "attribute_vectors": rng.normal(size=(1, FLOW.latent_dim)).astype(np.float32),
            **glow_weights(rng),
        }
    if kind == "encoder":
        meta = EncoderCard(
            tool=tool,
            architecture="latent_mlp",
            input_dim=FLOW.latent_dim,
            hidden=[8],
            k=k,
            task="object_hue",
            num_classes=10,
            loss=LossWeights(adv=0.1),
            data=PROVENANCE,
            training=EncoderTraining(
                epochs=1,
                batch_size=4,
                lr=1e-3,
                seed=0,
                best_epoch=0,
                train_accuracy=0.5,
                val_accuracy=0.5,
                n_train=10,
                seconds=1.0,
            ),
            parents={"similarity_spec": HASH_A},
        )
        return meta, {
            "encoder.0.weight": rng.normal(size=(8, 192)).astype(np.float32),
            "encoder.3.weight": rng.normal(size=(k, 8)).astype(np.float32),
        }
    if kind == "representations":
        meta = RepresentationBundle(
            tool=tool,
            split="test",
            n_samples=n,
            k=k,
            label_names=["object_hue"],
            label_classes={"object_hue": 10},
            certified=True,
            certificate=CERT,
            parents={"encoder": HASH_B, "similarity_spec": HASH_A},
        )
        return meta, {
            "z": rng.normal(size=(n, k)).astype(np.float32),
            "ids": np.arange(n, dtype=np.int64),
            "labels.object_hue": rng.integers(0, 10, n).astype(np.int64),
            "z_cs": rng.normal(size=(n, k)).astype(np.float32),
            "r_cs": rng.uniform(0, 1, n).astype(np.float32),
            "status": np.zeros(n, dtype=np.uint8),
            "center_shift": rng.uniform(0, 1, n).astype(np.float32),
            "seconds": rng.uniform(0, 1, n).astype(np.float32),
        }
    if kind == "classifier":
        meta = ClassifierCard(
            tool=tool,
            k=k,
            sigma_cls=1.0,
            task="object_hue",
            classes=[str(i) for i in range(10)],
            training=ClassifierTraining(
                epochs=1, batch_size=4, lr=1e-3, seed=0, n_train=10, seconds=1.0, majority_rate=0.5
            ),
            parents={"representations": HASH_B, "encoder": HASH_B, "similarity_spec": HASH_A},
        )
        return meta, {
            "classifier.weight": rng.normal(size=(10, k)).astype(np.float32),
            "classifier.bias": np.zeros(10, dtype=np.float32),
        }
    if kind == "verification_report":
        # per-sample outcomes (certified x3, abstained, not certified, repeated) and the summary
        # that is their own fractions (a report's summary must agree with its statuses)
        status = np.resize(np.array([0, 0, 0, 3, 1], dtype=np.uint8), n)
        prediction = np.where(status == 3, -1, 0).astype(np.int64)

        def frac(mask: np.ndarray) -> float:
            return float(mask.sum()) / n if n else 0.0

        meta = VerificationReport(
            tool=tool,
            n_samples=n,
            task="object_hue",
            classes=[str(i) for i in range(10)],
            has_labels=True,
            smoothing=SmoothingParams(sigma_cls=1.0, n0=10, n=100, alpha=0.001, seed=0),
            certificate=CERT,
            scope=CertificateScope(attributes=["orientation"], epsilon=1.0),
            summary=ReportSummary(
                n=n,
                accuracy=frac(prediction == 0),
                certified_fairness=frac(status == 0),
                certified_fair_and_accurate=frac(status == 0),
                abstain_center=0.0,
                abstain_classifier=frac(status == 3),
                not_certified=frac(status == 1),
                guarantee_probability=0.989,
            ),
            parents={"classifier": HASH_B, "representations": HASH_B, "similarity_spec": HASH_A},
        )
        return meta, {
            "ids": np.arange(n, dtype=np.int64),
            "prediction": prediction,
            "radius": np.ones(n, dtype=np.float32),
            "r_cs": np.ones(n, dtype=np.float32) / 2,
            "status": status,
            "labels": np.zeros(n, dtype=np.int64),
            "draws": np.where(status == 3, 0, 110).astype(np.int64),
        }
    if kind == "checkpoint":
        meta = Checkpoint(tool=tool, stage="train", run_key="abc", step=3, state={"epoch": 1})
        return meta, {
            "model.w": np.ones((2, 2), dtype=np.float32),
            "rng.torch": np.zeros(8, dtype=np.uint8),
        }
    raise KeyError(kind)


def similarity_set(m: int, epsilon: float = 1.0, seed: int = 0):
    """An in-memory similarity spec with ``m`` random attribute vectors (as the regulator writes
    one vector per pair of orientation values, m = 49) and a randomly initialised tiny Glow
    (``FLOW``: 8x8 images, D = 192), its ActNorm initialised on random images."""
    import torch

    from lassi.regulator.similarity import SimilaritySet
    from lassi.regulator.training import build_glow

    meta, _ = make("similarity_spec")
    meta = meta.model_copy(update={"epsilon": epsilon})
    torch.manual_seed(seed)
    glow = build_glow(FLOW)
    with torch.no_grad():
        glow.initialize_actnorm(torch.rand(16, 3, FLOW.image_size, FLOW.image_size) - 0.5)
    glow.eval()
    glow.cache_inverse()
    vectors = 0.3 * torch.randn(m, FLOW.latent_dim, generator=torch.Generator().manual_seed(seed))
    return SimilaritySet(meta, glow, vectors, HASH_A, Path(f"in-memory-spec-m{m}"))


def write_raw(path, meta_json: str, tensors: dict, checksum: bool = True) -> None:
    """Write a file in the artifact format WITHOUT the writer's validation (hostile inputs).

    The checksum is recomputed so that the file reaches the validation it is meant to test.
    """
    from safetensors.numpy import save

    from lassi.spec.contract.io import CHECKSUM_KEY, METADATA_KEY, content_digest

    metadata = {METADATA_KEY: meta_json}
    if checksum:
        metadata[CHECKSUM_KEY] = content_digest(meta_json, tensors)
    with open(path, "wb") as f:
        f.write(save(tensors, metadata=metadata))


# fmt: off
DATA = ["--image-size", "16", "--n-train", "400", "--n-val", "100", "--n-test", "100",
        "--correlate", "orientation:object_hue:0.9"]


def run(main, args: list[str]) -> str:
    """Invoke a role CLI in-process; fail the test with its output unless it exits 0."""
    from click.testing import CliRunner

    result = CliRunner().invoke(main, [*args])
    assert result.exit_code == 0, result.output
    return result.output


def build_chain(d, glow: Path | None = None, define: tuple[str, ...] = (), data: list[str] | None = None,
                attribute: str = "orientation", task: str = "object_hue",
                glow_options: tuple[str, ...] = ("--levels", "2", "--depth", "2", "--hidden", "16"),
                glow_training: tuple[str, ...] = ("--steps", "40", "--batch-size", "16", "--warmup", "5"),
                encoder_options: tuple[str, ...] = ("--hidden", "64,32", "--k", "16", "--epochs", "2",
                                                    "--attack-points", "4"),
                certify: tuple[int, int, int] = (6, 1500, 2000), verify_n: int = 2000) -> dict:
    """regulator -> producer -> consumer at tiny sizes, through the CLIs; returns the file paths.
    ``glow``: reuse this Glow instead of training one; ``define``: more ``define`` options;
    ``data``: the data options of every command (default DATA, the rendered 3D Shapes);
    ``glow_options``/``glow_training``: train-glow's architecture and schedule;
    ``encoder_options``: producer train's sizes; ``certify``: the certified test bundle's
    (samples, n0, n); ``verify_n``: verify's n."""
    data = DATA if data is None else data
    limit, n0, n = (str(v) for v in certify)
    from lassi.consumer.cli import main as consumer
    from lassi.producer.cli import main as producer
    from lassi.regulator.cli import main as regulator

    p = {name: d / f"{name}.safetensors" for name in ("glow", "spec", "encoder", "train", "test", "classifier", "report")}
    if glow is None:
        run(regulator, ["train-glow", *data, *glow_options, *glow_training, "--quiet", "--out", str(p["glow"])])
    else:
        p["glow"] = glow
    run(regulator, ["define", "--glow", str(p["glow"]), "--attribute", attribute, "--epsilon", "1.0", *data,
                    "--fidelity-images", "4", "--quiet", *define, "--out", str(p["spec"])])
    run(producer, ["train", "--spec", str(p["spec"]), *data, "--task", task, *encoder_options,
                   "--batch-size", "64", "--lambda-contr", "0.1", "--delta", "1", "--quiet", "--out", str(p["encoder"])])
    run(producer, ["encode", "--spec", str(p["spec"]), "--encoder", str(p["encoder"]), *data, "--split", "train",
                   "--quiet", "--out", str(p["train"])])
    run(producer, ["encode", "--spec", str(p["spec"]), "--encoder", str(p["encoder"]), *data, "--split", "test",
                   "--limit", limit, "--certify", "--n0", n0, "--n", n, "--delta", "0.1", "--quiet",
                   "--out", str(p["test"])])
    run(consumer, ["train", "--bundle", str(p["train"]), "--task", task, "--sigma", "0.5", "--quiet",
                   "--out", str(p["classifier"])])
    run(consumer, ["verify", "--classifier", str(p["classifier"]), "--bundle", str(p["test"]), "--n0", "100",
                   "--n", str(verify_n), "--quiet", "--out", str(p["report"])])
    return p
# fmt: on


GIB_KIB = 1024 * 1024


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


_PEAK_HOOK = (
    "import atexit, sys\n"
    "def _lassi_peak():\n"
    "    for line in open('/proc/self/status'):\n"
    "        if line.startswith('VmHWM:'):\n"
    "            sys.stderr.write('\\nlassi-peak-kib=' + line.split()[1] + '\\n')\n"
    "atexit.register(_lassi_peak)\n"
)


def run_child(code: str, args: list[str]) -> tuple[subprocess.CompletedProcess, int]:
    """Run Python ``code`` with ``args`` in a child process: (its result, the child's own peak
    resident memory in KiB). The peak is the child's VmHWM, read at its exit: the high-water mark
    of its own address space after exec (ru_maxrss, of the child or of RUSAGE_CHILDREN, also counts
    the parent's pages resident at fork time, so it grows with the test session)."""
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_HOOK + code, *args], capture_output=True, text=True
    )
    marker = run.stderr.rfind("\nlassi-peak-kib=")
    assert marker >= 0, f"the child reported no peak memory: {run.stderr[-500:]}"
    peak = int(run.stderr[marker:].split("=", 1)[1].split()[0])
    run.stderr = run.stderr[:marker]
    return run, peak


def invoke_bounded(cli, args: list[str], limit_kib: int = GIB_KIB):
    """``CliRunner().invoke`` with the command's peak memory measured: the process's resident
    high-water mark (VmHWM) is reset through /proc/self/clear_refs before the call, and the peak
    above the resident size at the start must stay under ``limit_kib`` (1 GiB by default)."""
    from click.testing import CliRunner

    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current VmRSS
    except OSError:  # not Linux, or not permitted: run unmeasured rather than not at all
        return CliRunner().invoke(cli, args)
    start = _rss_kib("VmRSS")
    result = CliRunner().invoke(cli, args)
    grown = _rss_kib("VmHWM") - start
    assert grown < limit_kib, f"{' '.join(args[:1])}: peak memory grew by {grown} KiB"
    return result


# ------------------------------------------------------------- forged files and one-line errors


def parts(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(metadata dict, tensors) of a valid artifact."""
    from lassi.spec import read_artifact

    artifact = read_artifact(path)
    return json.loads(artifact.meta.model_dump_json()), dict(artifact.tensors)


def forge(base: Path, out: Path, meta_edit=None, tensor_edit=None, meta_text=None) -> Path:
    """A copy of ``base`` with edited metadata (``meta_text``: written as that JSON text) and
    tensors under a correctly recomputed checksum: a forger's file."""
    meta, tensors = parts(base)
    if meta_edit:
        meta_edit(meta)
    if tensor_edit:
        tensor_edit(tensors)
    write_raw(out, meta_text(meta) if meta_text else json.dumps(meta), tensors)
    return out


def raw(base: Path) -> tuple[dict, bytes]:
    """(safetensors header with its ``__metadata__``, data section) of a file."""
    from lassi.spec.contract.io import parse_header

    data = base.read_bytes()
    header, metadata, start = parse_header(data, base)
    header["__metadata__"] = metadata
    return header, data[start:]


def write_header(out: Path, header: dict | bytes, body: bytes, length: int | None = None) -> None:
    """A safetensors file of ``header`` (a dict or its bytes) and ``body``; ``length``: the
    header length to declare instead of the true one."""
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    out.write_bytes(struct.pack("<Q", len(blob) if length is None else length) + blob + body)


def edit_header(base: Path, out: Path, edit) -> None:
    """A copy of ``base`` whose safetensors header ``edit`` changed in place."""
    header, body = raw(base)
    edit(header)
    write_header(out, header, body)


def sparse_file(path: Path, head: bytes, size: int) -> Path:
    """``head`` followed by zeros up to ``size`` bytes, without writing the zeros (a hole)."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def one_line(result, code: int, *needles: str, warnings: bool = False) -> str:
    """The one line a CLI run printed, checked: exit status ``code``, no traceback, every needle
    in the line (``warnings``: lines starting ``warning:`` may come besides it)."""
    __tracebackhide__ = True
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    if warnings:
        lines = [line for line in lines if not line.startswith("warning:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def run_role_child(role: str, args: list[str]) -> tuple[int, list[str], int]:
    """A role's CLI (``lassi.<role>.cli``) in a child process: (exit status, its non-blank
    stderr lines, its own peak resident memory in KiB; see :func:`run_child`)."""
    run, peak = run_child(f"from lassi.{role}.cli import main; main()", args)
    return run.returncode, [line for line in run.stderr.strip().splitlines() if line.strip()], peak


WITHOUT_TORCH = """
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "torch":
            raise ImportError(f"blocked import of {name}")

sys.meta_path.insert(0, BlockTorch())
"""
"""Python that makes any later import of torch fail: prefix of a script run where only
onnxruntime and numpy may be used."""


def python_child(script: str, timeout: float = 120) -> str:
    """Run a Python ``script`` in a child process with this session's ``sys.path``; its stdout
    (the test fails with the child's stderr unless it exits 0)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=timeout)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# ------------------------------------------------------------- a miniature CelebA (official layout)

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses "
    "Goatee Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache "
    "Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks "
    "Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick "
    "Wearing_Necklace Wearing_Necktie Young"
).split()
N_FACES = 6
PARTITION = [0, 0, 0, 1, 2, 2]
INNER, OUTER = (200, 40, 40), (20, 40, 220)


def face_image(width: int = 44, height: int = 54) -> Image.Image:
    """A tiny stand-in face: a 24 px square of INNER colour centred on an OUTER background."""
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:] = OUTER
    top, left = (height - 24) // 2, (width - 24) // 2
    pixels[top : top + 24, left : left + 24] = INNER
    return Image.fromarray(pixels)


def label_grid() -> np.ndarray:
    """-1/1 labels [N_FACES, 40]: attribute j of image i is 1 iff (i + j) % 3 == 0."""
    i, j = np.meshgrid(np.arange(N_FACES), np.arange(40), indexing="ij")
    return np.where((i + j) % 3 == 0, 1, -1)


def write_celeba(root: Path) -> Path:
    """A miniature CelebA folder in exactly the official file formats, at ``root``."""
    (root / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(N_FACES)]
    for name in names:
        face_image().save(root / "img_align_celeba" / name, quality=95)
    rows = [
        name + " " + " ".join(f"{v:2d}" for v in labels)
        for name, labels in zip(names, label_grid(), strict=True)
    ]
    text = f"{N_FACES}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + "\n".join(rows) + "\n"
    (root / "list_attr_celeba.txt").write_text(text)
    partition = "".join(f"{name} {code}\n" for name, code in zip(names, PARTITION, strict=True))
    (root / "list_eval_partition.txt").write_text(partition)
    return root


CELEBA_FACE_SPLITS = (48, 12, 12)  # train, val, test (list_eval_partition codes 0, 1, 2)


def celeba_face(male: int, smiling: int, rng: np.random.Generator) -> Image.Image:
    """A 178x218 aligned-CelebA-sized stand-in: a face-coloured oval whose colour follows Male
    and a mouth bar whose width follows Smiling, with noise."""
    h, w = 218, 178
    yy, xx = np.mgrid[:h, :w]
    face = ((yy - 120) / 70.0) ** 2 + ((xx - 89) / 50.0) ** 2 < 1
    mouth = (np.abs(yy - 150) < 5) & (np.abs(xx - 89) < (12 + 18 * smiling))
    pixels = np.empty((h, w, 3))
    pixels[:] = (40, 60, 90)
    pixels[face] = (220, 170, 140) if male else (240, 190, 170)
    pixels[mouth] = (150, 40, 50)
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def write_celeba_faces(root: Path) -> Path:
    """A miniature CelebA in the official layout with images that vary (178x218 JPEGs, 48/12/12
    per split, Male and Smiling drawn in the image, the other attributes random)."""
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    codes = np.repeat([0, 1, 2], CELEBA_FACE_SPLITS)
    rows, partition = [], []
    for i, code in enumerate(codes):
        name = f"{i + 1:06d}.jpg"
        male, smiling = i % 2, (i // 2) % 2
        celeba_face(male, smiling, rng).save(root / "img_align_celeba" / name, quality=95)
        labels = np.where(rng.random(len(CELEBA_ATTRIBUTES)) < 0.5, 1, -1)
        labels[CELEBA_ATTRIBUTES.index("Male")] = 1 if male else -1
        labels[CELEBA_ATTRIBUTES.index("Smiling")] = 1 if smiling else -1
        rows.append(name + " " + " ".join(f"{v:2d}" for v in labels))
        partition.append(f"{name} {code}")
    (root / "list_attr_celeba.txt").write_text(
        f"{len(codes)}\n" + " ".join(CELEBA_ATTRIBUTES) + " \n" + "\n".join(rows) + "\n"
    )
    (root / "list_eval_partition.txt").write_text("\n".join(partition) + "\n")
    return root


class RecordingBar:
    """A stand-in for tqdm that records every postfix a loop sets (what a user would read)."""

    postfixes: list[dict] = []

    def __init__(self, iterable=None, **kwargs):
        self.iterable = iterable if iterable is not None else []
        self.desc = kwargs.get("desc", "")

    def __iter__(self):
        return iter(self.iterable)

    def set_postfix(self, ordered=None, refresh=True, **fields):
        RecordingBar.postfixes.append({**(ordered or {}), **fields, "desc": self.desc})

    def update(self, n=1):
        pass

    def write(self, text):
        print(text)

    def close(self):
        pass
