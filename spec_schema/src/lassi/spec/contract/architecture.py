"""Declared architectures against the weights a file actually holds, before any model is built.

A model is built from its artifact's metadata (a ``GlowConfig``, an encoder or classifier
card) and only then filled with the file's weights. A hostile file could declare a huge
architecture (a 12 MB spec asking for a 25 GB Glow) and let the builder allocate it. So on
read, before the tensors are even loaded, the declared architecture must (1) stay under sane
upper bounds and (2) agree with the shapes in the safetensors header: the number of weights
a Glow of that configuration has (Kingma & Dhariwal 2018; the multi-scale flow of the paper,
Sec. 3), the Linear layers an encoder or classifier card declares. A model built from an
accepted file is thus never larger than the weights the file carries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

# Sane upper bounds (float32: 4 bytes per weight). The paper's CelebA Glow (64x64, 3 levels,
# 32 steps, width 512) has about 3e7 weights; the authors' released CelebA 128x128 Glow (L = 5,
# K = 32, width 512, additive) 1.02e8; 1.5e8 leaves room and stays under 600 MB.
MAX_MODEL_WEIGHTS = 150_000_000
# Activations of one image in one coupling network: hidden x (image_size / 2)**2 elements
# (128 MB in float32); 64x64 with width 512 needs 2**19.
MAX_GLOW_ACTIVATION = 2**25
# A ResNet-18 of base width 64 has about 1.12e7 weights; it grows with width**2.
RESNET18_WEIGHTS_AT_64 = 11_200_000

Shapes = Mapping[str, Sequence[int]]


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def glow_weight_count(
    image_size: int, n_levels: int, n_steps: int, hidden: int, coupling: str, channels: int = 3
) -> tuple[int, int]:
    """(elements, tensors) of a Glow's state dict: per level a squeeze to 4c channels, K steps
    of ActNorm (loc, logs, initialized), invertible 1x1 conv in LU form (perm, sign_s, lower,
    upper, log_s) and a coupling net (3x3 conv, 1x1 conv, zero 3x3 conv with scale); a split
    prior (zero 3x3 conv) below the top, a learned Gaussian (mean, log_sd) on top."""
    elements = tensors = 0
    c, size = channels, image_size
    for level in range(n_levels):
        big = 4 * c
        out = big // 2 if coupling == "additive" else big
        actnorm = 2 * big + 1
        invconv = 3 * big * big + 2 * big
        net = (big // 2 * hidden * 9 + hidden) + (hidden * hidden + hidden) + (hidden * out * 9 + 2 * out)
        elements += n_steps * (actnorm + invconv + net)
        tensors += n_steps * (3 + 5 + 7)
        if level < n_levels - 1:
            elements += big // 2 * big * 9 + 2 * big
            tensors += 3
        else:
            elements += 2 * big * (size // 2) ** 2
            tensors += 2
        c, size = 2 * c, size // 2
    return elements, tensors


def check_glow(flow: object, shapes: Shapes, prefix: str = "glow.") -> str | None:
    """The problem with a declared ``GlowConfig`` given the header's tensor shapes, or None."""
    f = flow  # a lassi.spec.contract.models.GlowConfig (not imported: models imports this module)
    elements, count = glow_weight_count(
        f.image_size, f.n_levels, f.n_steps, f.hidden, f.coupling, f.channels  # type: ignore[attr-defined]
    )
    if elements > MAX_MODEL_WEIGHTS:
        return f"flow declares a Glow of {elements} weights, over the limit of {MAX_MODEL_WEIGHTS}"
    activation = f.hidden * (f.image_size // 2) ** 2  # type: ignore[attr-defined]
    if activation > MAX_GLOW_ACTIVATION:
        return (
            f"flow declares hidden x (image_size/2)**2 = {activation} activations per image, "
            f"over the limit of {MAX_GLOW_ACTIVATION}"
        )
    held = [shape for name, shape in shapes.items() if name.startswith(prefix)]
    held_elements = sum(_numel(s) for s in held)
    if (held_elements, len(held)) != (elements, count):
        return (
            f"flow declares a Glow of {elements} weights in {count} tensors, the file holds "
            f"{held_elements} in {len(held)} (architecture and weights disagree)"
        )
    return None


def _linear_shapes(shapes: Shapes, prefix: str) -> Counter[tuple[int, ...]]:
    return Counter(tuple(int(d) for d in s) for n, s in shapes.items() if n.startswith(prefix) and len(s) == 2)


def _mismatch(what: str, want: Counter, have: Counter) -> str | None:
    if want == have:
        return None
    missing = sorted(want - have)
    extra = sorted(have - want)
    detail = f"missing {list(missing[0])}" if missing else f"unexpected {list(extra[0])}"
    return f"{what} declared in the metadata do not match the weights ({detail})"


def check_encoder(card: object, shapes: Shapes) -> str | None:
    """An encoder card's (input_dim, hidden, k, num_classes) against its Linear weights."""
    c = card  # a lassi.spec.contract.models.EncoderCard
    k, classes = c.k, c.num_classes  # type: ignore[attr-defined]
    if c.architecture == "latent_mlp":  # type: ignore[attr-defined]
        widths = [c.input_dim, *c.hidden, k]  # type: ignore[attr-defined]
        weights = sum(a * b + b for a, b in zip(widths, widths[1:], strict=False))
        if weights > MAX_MODEL_WEIGHTS:
            return f"encoder declares {weights} weights, over the limit of {MAX_MODEL_WEIGHTS}"
        want = Counter((b, a) for a, b in zip(widths, widths[1:], strict=False))
    else:
        weights = RESNET18_WEIGHTS_AT_64 * (c.width / 64) ** 2  # type: ignore[attr-defined]
        if weights > MAX_MODEL_WEIGHTS:
            return f"encoder declares a ResNet-18 of width {c.width}, over the limit of {MAX_MODEL_WEIGHTS} weights"  # type: ignore[attr-defined]
        want = Counter([(k, 8 * c.width)])  # type: ignore[attr-defined]
    problem = _mismatch("encoder layers (input_dim, hidden, k)", want, _linear_shapes(shapes, "encoder."))
    if problem:
        return problem
    aux = _linear_shapes(shapes, "aux.")
    if aux and aux != Counter([(classes, k)]):
        return _mismatch("auxiliary head (k, num_classes)", Counter([(classes, k)]), aux)
    return None


def check_classifier(card: object, shapes: Shapes) -> str | None:
    """A classifier card's (k, hidden, classes) against its Linear weights."""
    c = card  # a lassi.spec.contract.models.ClassifierCard
    k, classes, hidden = c.k, len(c.classes), c.hidden  # type: ignore[attr-defined]
    if c.architecture == "linear":  # type: ignore[attr-defined]
        want = Counter([(classes, k)])
    else:
        if hidden < 1:
            return "an mlp classifier needs hidden >= 1"
        if hidden * (k + classes) > MAX_MODEL_WEIGHTS:
            return f"classifier declares {hidden * (k + classes)} weights, over the limit of {MAX_MODEL_WEIGHTS}"
        want = Counter([(hidden, k), (classes, hidden)])
    return _mismatch("classifier layers (k, hidden, classes)", want, _linear_shapes(shapes, "classifier."))
