"""Importing a Glow trained with rosinality/glow-pytorch, the format of the LASSI authors' Glows.

The paper's Glows (Sec. 5: CelebA 64x64 with K = 32 steps and L = 4 blocks, CelebA 128x128,
FairFace, 3D Shapes) were trained with rosinality/glow-pytorch and are released as PyTorch state
dicts of its ``Glow``. The conversion maps that state dict onto this project's Glow exactly:

| rosinality                                      | here                                        |
| ----------------------------------------------- | ------------------------------------------- |
| ActNorm ``scale * (x + loc)``                   | ``(x + loc) * exp(logs)``, logs = log scale |
| InvConv2dLU ``w_p``, ``w_l``, ``w_u``, ``w_s``, | ``perm``, ``lower``, ``upper``, ``log_s``,  |
| ``s_sign`` (masks and eye are fixed buffers)    | ``sign_s``                                  |
| InvConv2d (``--no_lu``) plain weight W          | W = P L U decomposed in float64             |
| coupling ``sigmoid(log_s + 2)`` / additive      | the same two couplings, same net layout     |
| ZeroConv2d (ones padding, ``exp(3 * scale)``)   | the same ZeroConv2d                         |
| split prior ``ZeroConv2d(kept)``                | :class:`SplitPrior` (same conv)             |
| top prior ``ZeroConv2d(zeros)``                 | :class:`TopPrior` mean and log-sd, the      |
|                                                 | conv's constant output computed once        |

Squeeze ordering, the split (first half kept, second half z), the order of the z's and the
input shift (``floor(x / 2**(8 - n_bits)) / 2**n_bits - 0.5``, :func:`preprocess`) are the same
on both sides. Neither the image size nor ``n_bits`` is in a state dict; the top prior depends
on the image size, so it is given on import.

Reading is safe: the file is size-bounded and read once, ``torch.load(weights_only=True)``
refuses every pickle that builds anything but tensors and plain containers, and the result must
be a flat ``str -> Tensor`` dict of bounded shapes; a ``.safetensors`` file with the same keys
is read without pickle at all. Whatever cannot be mapped is refused (exit 3) naming the tensor.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import Tensor

from lassi.regulator.glow.model import Glow
from lassi.spec import GlowConfig, InvalidArtifactError, UsageError
from lassi.spec.contract.architecture import MAX_MODEL_WEIGHTS
from lassi.spec.contract.errors import validation_message

FORMAT = "rosinality/glow-pytorch"
MAX_CHECKPOINT_BYTES = 2 * 1024**3
MAX_TENSORS = 20_000
MAX_DIMENSION = 65_536
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
FLAG_DTYPES = (torch.uint8, torch.bool, torch.int64, torch.int32)
_KEY = re.compile(r"blocks\.(\d+)\.(?:flows\.(\d+)|prior)\.")
_LU_KEYS = ("w_p", "u_mask", "l_mask", "s_sign", "l_eye", "w_l", "w_s", "w_u")


def refuse(where: str | Path, problem: str) -> InvalidArtifactError:
    return InvalidArtifactError(where, f"cannot import as a {FORMAT} Glow: {problem}")


# --------------------------------------------------------------------------- reading


def read_state_dict(path: str | Path, limit: int | None = None) -> tuple[dict[str, Tensor], bytes]:
    """(flat state dict, the file's bytes) of a ``.pt`` checkpoint or a ``.safetensors`` file.

    The file is read once with a size bound; a pickle is loaded with ``weights_only=True`` (no
    code runs: any object other than tensors and plain containers is refused), then the result
    must be a flat dict of str -> dense tensor with bounded shapes. Anything else: exit 3.
    """
    from lassi.spec.contract.files import read_file

    path = Path(path)
    data = read_file(path, MAX_CHECKPOINT_BYTES if limit is None else limit, "a Glow checkpoint")
    if _looks_like_safetensors(data):
        from safetensors.torch import load as st_load

        try:
            loaded: object = st_load(data)
        except Exception as error:  # the library's own validation of the header
            raise refuse(path, f"safetensors rejects the file ({type(error).__name__})") from None
    else:
        try:
            loaded = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
        except Exception as error:  # weights_only refuses every object it would have to build
            reason = " ".join(str(error).split())[:300]
            raise refuse(path, f"not a weights-only PyTorch checkpoint ({type(error).__name__}: {reason})") from None
    return check_flat_tensors(loaded, path), data


def _looks_like_safetensors(data: bytes) -> bool:
    """A safetensors file: an 8-byte little-endian header length, then a JSON object."""
    if len(data) < 10:
        return False
    size = int.from_bytes(data[:8], "little")
    return data[8:9] == b"{" and 8 + size <= len(data)


def check_flat_tensors(loaded: object, where: str | Path) -> dict[str, Tensor]:
    """``loaded`` as a flat ``str -> Tensor`` dict of dense, bounded tensors, or exit 3."""
    if not isinstance(loaded, dict):
        raise refuse(where, f"the file holds a {type(loaded).__name__}, not a state dict")
    if len(loaded) > MAX_TENSORS:
        raise refuse(where, f"{len(loaded)} entries, over the limit of {MAX_TENSORS}")
    state: dict[str, Tensor] = {}
    total = 0
    for key, value in loaded.items():
        if not isinstance(key, str) or len(key) > 200:
            raise refuse(where, f"state dict key {str(key)[:60]!r} is not a short string")
        if not isinstance(value, Tensor):
            raise refuse(where, f"entry '{key}' is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided or value.is_quantized or value.is_complex():
            raise refuse(where, f"tensor '{key}' is not a dense real tensor")
        if value.dtype not in FLOAT_DTYPES + FLAG_DTYPES:
            raise refuse(where, f"tensor '{key}' has dtype {value.dtype}")
        if value.dim() > 4 or any(s > MAX_DIMENSION for s in value.shape):
            raise refuse(where, f"tensor '{key}' has shape {list(value.shape)} (at most 4 dimensions of {MAX_DIMENSION})")
        total += value.numel()
        if total > 2 * MAX_MODEL_WEIGHTS:
            raise refuse(where, f"more than {2 * MAX_MODEL_WEIGHTS} values in all")
        state[key] = value.detach()
    if state and all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


# --------------------------------------------------------------------------- architecture


def infer_config(state: Mapping[str, Tensor], image_size: int, n_bits: int, where: str | Path) -> GlowConfig:
    """The ``GlowConfig`` of a rosinality state dict: blocks L, flows per block K, coupling
    width, affine or additive (from the shapes); ``image_size`` and ``n_bits`` as given."""
    flows: dict[int, set[int]] = {}
    for key in state:
        match = _KEY.match(key)
        if match is None:
            raise refuse(where, f"unexpected tensor '{key}' (not part of a {FORMAT} Glow)")
        block = int(match.group(1))
        flows.setdefault(block, set())
        if match.group(2) is not None:
            flows[block].add(int(match.group(2)))
    n_blocks = len(flows)
    if n_blocks == 0 or sorted(flows) != list(range(n_blocks)):
        raise refuse(where, f"blocks must be numbered 0..L-1, found {sorted(flows)[:10]}")
    counts = {len(f) for f in flows.values()}
    if len(counts) != 1 or any(sorted(f) != list(range(len(f))) for f in flows.values()):
        raise refuse(where, "every block must hold flows numbered 0..K-1, the same K in each")
    n_steps = counts.pop()
    if n_steps == 0:
        raise refuse(where, "a block has no flow steps")
    first = "blocks.0.flows.0."
    loc = _get(state, first + "actnorm.loc", where)
    if loc.dim() != 4 or loc.shape[1] != 12:
        raise refuse(where, f"tensor '{first}actnorm.loc' has shape {list(loc.shape)}, expected [1, 12, 1, 1] (3-channel images)")
    hidden = int(_get(state, first + "coupling.net.0.weight", where).shape[0])
    out = _get(state, first + "coupling.net.4.conv.weight", where)
    if out.shape[0] not in (6, 12):
        raise refuse(where, f"tensor '{first}coupling.net.4.conv.weight' has {out.shape[0]} outputs, expected 12 (affine) or 6 (additive)")
    coupling = "affine" if out.shape[0] == 12 else "additive"
    try:
        GlowConfig(image_size=image_size, n_levels=1, n_bits=n_bits)
    except ValidationError as error:
        raise UsageError(None, f"import options: {validation_message(error, 'option')}") from None
    if image_size % 2**n_blocks:
        raise UsageError(
            None,
            f"--image-size {image_size} must be divisible by 2**L = {2**n_blocks} "
            f"(the checkpoint has L = {n_blocks} blocks)",
        )
    try:
        return GlowConfig(
            image_size=image_size,
            n_levels=n_blocks,
            n_steps=n_steps,
            hidden=hidden,
            coupling=coupling,
            n_bits=n_bits,
        )
    except ValidationError as error:  # L, K or the width beyond this project's bounds
        raise refuse(where, validation_message(error, "architecture")) from None


def _get(state: Mapping[str, Tensor], key: str, where: str | Path) -> Tensor:
    if key not in state:
        raise refuse(where, f"tensor '{key}' is missing")
    return state[key]


# --------------------------------------------------------------------------- conversion


class _Taker:
    """Takes each source tensor once, checking its shape; reports what was never taken."""

    def __init__(self, state: Mapping[str, Tensor], where: str | Path) -> None:
        self.state = dict(state)
        self.where = where

    def __call__(self, key: str, shape: tuple[int, ...], flag: bool = False) -> Tensor:
        value = _get(self.state, key, self.where)
        del self.state[key]
        if tuple(value.shape) != shape:
            raise refuse(self.where, f"tensor '{key}' has shape {list(value.shape)}, expected {list(shape)}")
        if flag:
            return value
        if value.dtype not in FLOAT_DTYPES:
            raise refuse(self.where, f"tensor '{key}' has dtype {value.dtype}, expected a float")
        value = value.to(torch.float32)  # the dtype of this project's Glow
        if not torch.isfinite(value).all():
            raise refuse(self.where, f"tensor '{key}' contains NaN or Inf")
        return value

    def leftover(self) -> None:
        if self.state:
            key = sorted(self.state)[0]
            raise refuse(self.where, f"unexpected tensor '{key}' (not part of a {FORMAT} Glow)")


def _actnorm(take: _Taker, src: str, channels: int) -> dict[str, Tensor]:
    """y = scale * (x + loc) = (x + loc) * exp(logs) with logs = log(scale); scale must be > 0."""
    flag = take(src + "initialized", (), flag=True)
    if not bool(flag.to(torch.float64) != 0):
        raise refuse(
            take.where,
            f"tensor '{src}initialized' is 0: this ActNorm was never initialised, its first "
            "forward pass would set it from that batch's statistics",
        )
    loc = take(src + "loc", (1, channels, 1, 1))
    scale = take(src + "scale", (1, channels, 1, 1))
    if not (scale > 0).all():
        raise refuse(take.where, f"tensor '{src}scale' has entries <= 0 (log-scale ActNorm needs a positive scale)")
    return {"loc": loc, "logs": torch.log(scale.double()).float(), "initialized": torch.tensor(True)}


def _invconv_lu(take: _Taker, src: str, c: int) -> dict[str, Tensor]:
    """InvConv2dLU: W = w_p (w_l * l_mask + l_eye) (w_u * u_mask + diag(s_sign * exp(w_s)))."""
    where = take.where
    masks = {
        "u_mask": torch.triu(torch.ones(c, c), 1),
        "l_mask": torch.tril(torch.ones(c, c), -1),
        "l_eye": torch.eye(c),
    }
    for name, expected in masks.items():
        if not torch.equal(take(src + name, (c, c)), expected):
            raise refuse(where, f"tensor '{src}{name}' is not the fixed {name} of a {c}x{c} LU convolution")
    perm = take(src + "w_p", (c, c))
    is_permutation = (
        ((perm == 0) | (perm == 1)).all() and (perm.sum(0) == 1).all() and (perm.sum(1) == 1).all()
    )
    if not is_permutation:
        raise refuse(where, f"tensor '{src}w_p' is not a permutation matrix")
    sign = take(src + "s_sign", (c,))
    if not ((sign == 1) | (sign == -1)).all():
        raise refuse(where, f"tensor '{src}s_sign' has entries other than +1 and -1")
    return {
        "perm": perm,
        "sign_s": sign,
        "lower": torch.tril(take(src + "w_l", (c, c)), -1),
        "upper": torch.triu(take(src + "w_u", (c, c)), 1),
        "log_s": take(src + "w_s", (c,)),
    }


def _invconv_plain(take: _Taker, src: str, c: int) -> dict[str, Tensor]:
    """InvConv2d (``--no_lu``): its weight W = P L U (partial pivoting, float64); the log-det
    sum(log|diag U|) equals its slogdet."""
    weight = take(src + "weight", (c, c, 1, 1))[:, :, 0, 0].double()
    perm, lower, upper = torch.linalg.lu(weight)
    s = torch.diagonal(upper)
    if not (s.abs() > 0).all():
        raise refuse(take.where, f"tensor '{src}weight' is a singular 1x1 convolution")
    return {
        "perm": perm,
        "sign_s": torch.sign(s),
        "lower": torch.tril(lower, -1),
        "upper": torch.triu(upper, 1),
        "log_s": torch.log(s.abs()),
    }


def _zero_conv(take: _Taker, src: str, c_in: int, c_out: int) -> dict[str, Tensor]:
    return {
        "conv.weight": take(src + "conv.weight", (c_out, c_in, 3, 3)),
        "conv.bias": take(src + "conv.bias", (c_out,)),
        "scale": take(src + "scale", (1, c_out, 1, 1)),
    }


def _top_prior(take: _Taker, src: str, c: int, size: int) -> dict[str, Tensor]:
    """The last block's prior is ZeroConv2d(zeros): a constant mean and log-sd per position
    (the ones padding makes the border differ), computed here once in float64."""
    conv = {k: v.double() for k, v in _zero_conv(take, src, c, 2 * c).items()}
    padded = F.pad(torch.zeros(1, c, size, size, dtype=torch.float64), [1, 1, 1, 1], value=1.0)
    out = F.conv2d(padded, conv["conv.weight"], conv["conv.bias"]) * torch.exp(conv["scale"] * 3)
    mean, log_sd = out.chunk(2, dim=1)
    return {"mean": mean, "log_sd": log_sd}


def convert_state_dict(
    state: Mapping[str, Tensor], image_size: int, n_bits: int = 5, where: str | Path = "checkpoint"
) -> tuple[Glow, int]:
    """(this project's Glow holding the checkpoint's function, the number of plain 1x1 convs
    that were LU-decomposed). Every source tensor is used exactly once; any other is refused."""
    config = infer_config(state, image_size, n_bits, where)
    take = _Taker(state, where)
    target: dict[str, Tensor] = {}
    channels, size = 3, image_size
    plain = 0
    for b in range(config.n_levels):
        c = 4 * channels
        out = c if config.coupling == "affine" else c // 2
        h = config.hidden
        for f in range(config.n_steps):
            src, dst = f"blocks.{b}.flows.{f}.", f"levels.{b}.steps.{f}."
            parts = {"actnorm.": _actnorm(take, src + "actnorm.", c)}
            if src + "invconv.weight" in take.state:
                parts["invconv."] = _invconv_plain(take, src + "invconv.", c)
                plain += 1
            else:
                parts["invconv."] = _invconv_lu(take, src + "invconv.", c)
            net = src + "coupling.net."
            parts["coupling.net."] = {
                "0.weight": take(net + "0.weight", (h, c // 2, 3, 3)),
                "0.bias": take(net + "0.bias", (h,)),
                "2.weight": take(net + "2.weight", (h, h, 1, 1)),
                "2.bias": take(net + "2.bias", (h,)),
                **{"4." + k: v for k, v in _zero_conv(take, net + "4.", h, out).items()},
            }
            for prefix, tensors in parts.items():
                target.update({dst + prefix + k: v for k, v in tensors.items()})
        src, dst = f"blocks.{b}.prior.", f"levels.{b}.prior."
        if b < config.n_levels - 1:
            target.update({dst + "conv." + k: v for k, v in _zero_conv(take, src, c // 2, c).items()})
        else:
            target.update({dst + k: v for k, v in _top_prior(take, src, c, size // 2).items()})
        channels, size = 2 * channels, size // 2
    take.leftover()
    glow = Glow(
        image_size=config.image_size, n_levels=config.n_levels, n_steps=config.n_steps,
        hidden=config.hidden, coupling=config.coupling, n_bits=config.n_bits, channels=3,
    )
    own = glow.state_dict()
    assert set(own) == set(target), sorted(set(own) ^ set(target))[:3]
    glow.load_state_dict({k: v.to(own[k].dtype) for k, v in target.items()})
    for name, value in glow.state_dict().items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise refuse(where, f"converting gives a non-finite '{name}' (a scale too large for float32)")
    return glow.eval(), plain


def glow_config_of(glow: Glow) -> GlowConfig:
    return GlowConfig(
        image_size=glow.image_size, n_levels=glow.n_levels, n_steps=glow.n_steps,
        hidden=glow.hidden, coupling=glow.coupling, n_bits=glow.n_bits,
    )


def import_glow(checkpoint: str | Path, out: str | Path, image_size: int, n_bits: int = 5) -> Path:
    """Convert a rosinality/glow-pytorch checkpoint into a ``glow`` artifact at ``out``."""
    from lassi.regulator.tool import TOOL
    from lassi.spec import GlowArtifact, Preprocessing, write_artifact
    from lassi.spec.contract.files import forget
    from lassi.spec.contract.io import sha256_bytes
    from lassi.spec.contract.models import GlowImport
    from lassi.spec.contract.torch_state import module_tensors

    checkpoint, out = Path(checkpoint), Path(out)
    state, data = read_state_dict(checkpoint)
    digest = sha256_bytes(data)
    del data
    forget(checkpoint)  # the command's pinned copy of the bytes: the tensors are loaded
    glow, plain = convert_state_dict(state, image_size, n_bits, checkpoint)
    del state
    flow = glow_config_of(glow)
    meta = GlowArtifact(
        tool=TOOL,
        flow=flow,
        preprocessing=Preprocessing.for_flow(flow),
        imported=GlowImport(
            format=FORMAT, file=checkpoint.name[:200] or "checkpoint", sha256=digest,
            plain_convs=plain,
        ),
    )
    write_artifact(out, meta, module_tensors(glow, "glow."))
    return out


__all__ = [
    "FORMAT",
    "MAX_CHECKPOINT_BYTES",
    "check_flat_tensors",
    "convert_state_dict",
    "import_glow",
    "infer_config",
    "read_state_dict",
]
