"""Tiny models for tests and examples: fast on a CPU, with the structures that break
naive implementations (BatchNorm, residual adds, in-place ReLU, functional ReLU, one ReLU
module reused, a branch off the output path, no-grad forward).

Beyond images: :class:`TinyLM` (token ids ``(B, T)`` -> next-token logits ``(B, T, V)``,
a causal transformer), :class:`TinyEncoder` (token ids -> class logits ``(B, K)``) and
:class:`TinyGenerator` (latent vectors ``(B, Z)`` -> images ``(B, C, H, W)``). The token
models name their embedding ``embed``, the layer to attribute token ids at."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "TinyCNN",
    "TinyResNet",
    "TinyMLP",
    "FunctionalReLUNet",
    "ReusedReLUNet",
    "NoGradNet",
    "DeadBranchNet",
    "TinyLM",
    "TinyEncoder",
    "TinyGenerator",
    "seeded",
]


def seeded(cls, *args, seed: int = 0, **kwargs) -> nn.Module:
    """Build ``cls(*args, **kwargs)`` with deterministic initial weights, in eval mode.
    BatchNorm running statistics are set to non-trivial values so eval mode matters."""
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(seed)
        model = cls(*args, **kwargs)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None  # tracked by default
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


class TinyCNN(nn.Module):
    """conv-relu-pool-conv-relu-pool-linear on (3, 16, 16)."""

    def __init__(self, num_classes: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.classifier = nn.Linear(12 * 4, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class TinyResNet(nn.Module):
    """ResNet-style: BatchNorm, residual adds, in-place ReLU reused inside blocks."""

    def __init__(self, num_classes: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _Block(8, 8, 1)
        self.layer2 = _Block(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(self.pool(x).flatten(1))


class TinyMLP(nn.Module):
    def __init__(self, in_features: int = 10, num_classes: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, num_classes)
        )

    def forward(self, x):
        return self.net(x)


class FunctionalReLUNet(nn.Module):
    """ReLUs as functional calls (F.relu, torch.relu, Tensor.relu): no module hooks see them."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x).relu() - 0.1 * self.fc(x)


class ReusedReLUNet(nn.Module):
    """One in-place nn.ReLU module applied three times."""

    def __init__(self, num_classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, num_classes)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc2(self.act(self.fc1(x)))


class NoGradNet(nn.Module):
    """Its forward runs under torch.no_grad(): gradient methods cannot explain it."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(10, num_classes)

    def forward(self, x):
        with torch.no_grad():
            return self.fc(x)


class DeadBranchNet(nn.Module):
    """``side`` runs in forward but the output does not use it."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.main = nn.Linear(10, num_classes)
        self.side = nn.Linear(10, 4)

    def forward(self, x):
        _ = self.side(x)
        return self.main(x)


# -- beyond images: token ids in, sequences out; latent vectors in, images out -------------


class _Attention(nn.Module):
    """Causal multi-head self-attention, written out (no fused kernel) so that every
    intermediate is an ordinary autograd op."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        att = (q @ k.transpose(-2, -1)) / (D // self.heads) ** 0.5
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~causal, float("-inf")).softmax(dim=-1)
        return self.proj((att @ v).transpose(1, 2).reshape(B, T, D))


class _TransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    """A causal transformer language model: ``embed`` (token embedding) plus a learned
    position embedding, ``n_layers`` pre-norm blocks (``blocks.0``, ...), a final norm and
    ``unembed``. Token ids ``(B, T)`` with ``T <= max_len`` give logits ``(B, T, vocab_size)``;
    the output at position ``t`` predicts the token at ``t + 1``."""

    def __init__(
        self, vocab_size: int = 16, dim: int = 16, n_layers: int = 2, heads: int = 2, max_len: int = 32
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(0.1 * torch.randn(max_len, dim))
        self.blocks = nn.Sequential(*[_TransformerBlock(dim, heads) for _ in range(n_layers)])
        self.ln_f = nn.LayerNorm(dim)
        self.unembed = nn.Linear(dim, vocab_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2 or ids.shape[1] > self.max_len:
            raise ValueError(f"TinyLM takes token ids (B, T) with T <= {self.max_len}, got shape {tuple(ids.shape)}")
        h = self.embed(ids) + self.pos[: ids.shape[1]]
        return self.unembed(self.ln_f(self.blocks(h)))


class TinyEncoder(nn.Module):
    """Token ids ``(B, T)`` -> ``embed`` -> a per-token MLP (``mix``) -> mean over positions
    -> ``head``: class logits ``(B, num_classes)``."""

    def __init__(self, vocab_size: int = 16, dim: int = 12, num_classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.mix = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.head = nn.Linear(dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.mix(self.embed(ids)).mean(dim=1))


class TinyGenerator(nn.Module):
    """A DCGAN-style generator: latent ``z (B, latent_dim)`` -> ``fc`` -> (16, 2, 2) ->
    ``deconv`` (conv-transpose, BatchNorm, ReLU, conv-transpose) -> ``tanh`` images
    ``(B, channels, 8, 8)``."""

    def __init__(self, latent_dim: int = 8, channels: int = 3) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.fc = nn.Linear(latent_dim, 16 * 2 * 2)
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.ConvTranspose2d(8, channels, 4, stride=2, padding=1),
        )
        for m in (self.fc, self.deconv[0], self.deconv[3]):  # He init: images that vary with z
            assert isinstance(m, (nn.Linear, nn.ConvTranspose2d))
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.deconv(self.fc(z).reshape(-1, 16, 2, 2)))
