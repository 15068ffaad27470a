"""The fair encoder E_L's architectures and its auxiliary heads (Sec. 4.2).

The producer trains E_L (``lassi.producer.training``); the architectures live in the regulator's
package because the regulator also runs a given encoder: ``define --method discover`` learns
directions along which a (biased) lassi encoder's prediction changes most. The producer builds on
the regulator (spec ← regulator ← producer), so both import them from here without a cycle.

The authors' default E_L (their published code, eth-sri/lassi) works directly on the flattened Glow latent,
MLP 3HW → 2048 → 1024 (Linear + BatchNorm + ReLU) → Linear 512 → BatchNorm1d(512, affine=False);
the paper's (ICLR) variant is a ResNet-18 on the decoded image D_G(z). Both end in a
non-affine BatchNorm so that representations have unit scale per coordinate. The auxiliary
classifier is Linear(k, C); an optional decoder reconstructs the latent (λ_rec, for transfer).
The smoothing base function built on E_L (and its eval-mode affine trick) is in base_function.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class LatentMLP(nn.Module):
    """E_L on the flattened Glow latent: (Linear + BatchNorm1d + ReLU) per hidden layer, then
    Linear(k) and BatchNorm1d(k, affine=False) (the authors' default)."""

    def __init__(self, input_dim: int, hidden: Sequence[int] = (2048, 1024), k: int = 512) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.k = k
        layers: list[nn.Module] = []
        width = input_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.BatchNorm1d(size), nn.ReLU()]
            width = size
        layers += [nn.Linear(width, k), nn.BatchNorm1d(k, affine=False)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.flatten(1))


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convolutions with BatchNorm and an identity/1x1 shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ImageResNet18(nn.Module):
    """E_L on the decoded image D_G(z) ∈ [−0.5, 0.5]^{3×H×W}: ResNet-18 (BasicBlock [2, 2, 2, 2]).

    ``cifar_stem``: a 3x3 stride-1 stem without max-pooling for small images (default); otherwise
    the ImageNet stem (7x7 stride 2 + max-pool). Widths w, 2w, 4w, 8w (w = ``width``, 64 in the
    standard network); global average pooling, then Linear(k) and BatchNorm1d(k, affine=False).
    """

    def __init__(
        self, k: int = 512, width: int = 64, in_channels: int = 3, cifar_stem: bool = True
    ) -> None:
        super().__init__()
        self.k = k
        if cifar_stem:
            stem = [nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)]
        else:
            stem = [nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)]
        stem += [nn.BatchNorm2d(width), nn.ReLU()]
        if not cifar_stem:
            stem.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)
        blocks: list[nn.Module] = []
        in_planes = width
        for stage, planes in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if stage == 0 else 2
            blocks += [BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)]
            in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Linear(in_planes, k), nn.BatchNorm1d(k, affine=False))

    def forward(self, x: Tensor) -> Tensor:
        features = self.blocks(self.stem(x))
        return self.head(features.mean(dim=(2, 3)))


class AuxClassifier(nn.Module):
    """The auxiliary classifier C_L^aux: Linear(k, C) on the representation."""

    def __init__(self, k: int, n_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(k, n_classes)

    def forward(self, r: Tensor) -> Tensor:
        return self.linear(r)


class LatentDecoder(nn.Module):
    """Reconstructs the (flattened) Glow latent from the representation, for the λ_rec term:
    (Linear + ReLU) per hidden layer (an int: one layer of that width), then Linear(output_dim)."""

    def __init__(self, k: int, output_dim: int, hidden: int | Sequence[int] = (1024,)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = k
        for size in (hidden,) if isinstance(hidden, int) else hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, output_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, r: Tensor) -> Tensor:
        return self.net(r)
