"""The four codecs, all variable-rate (one network for qualities 1..8 and any value between).

Every model is  x -> g_a -> y*gain(q) -> [hyper-analysis -> hyper-latents] -> quantize -> entropy code,
and decodes  hyper-latents -> integer hyper-synthesis -> (mean, scale index) -> y_hat -> g_s(y_hat/gain).

* ``factorized``   Ballé et al. 2017: y coded with a per-channel factorized density.
* ``hyperprior``   Ballé et al. 2018: zero-mean Gaussian for y, scales from a hyperprior z.
* ``mean-scale``   Minnen et al. 2018 without the serial context model: means and scales from z.
* ``coarse2fine``  Hu, Yang, Liu 2020: y at 1/16, fine hyper-latent z2 at 1/32, coarse z1 at 1/64;
  each level's mean/scale come from the decoded coarser level, and the synthesis aggregates the
  hyper features (h1, h2) with the main latent. No serial context: every layer runs in parallel.

A model is described to the run time by ``levels()``: the latents from coarsest to finest, which hyper
network predicts each one's entropy parameters, and which hyper features the synthesis consumes.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from models.entropy_models import EntropyBottleneck, gaussian_likelihood, scale_from_position
from models.layers import GDN, SubpixelUp, conv, deconv
from service.codec.manifest import Level

# CompressAI's MSE lambda ladder, so our curves compare with the published anchors.
LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.18)
QUALITIES = len(LAMBDAS)


def lambda_for_quality(q: torch.Tensor) -> torch.Tensor:
    """Log-linear interpolation of the ladder for fractional qualities in [1, 8]."""
    logs = torch.log(torch.tensor(LAMBDAS, dtype=torch.float32, device=q.device))
    pos = (q - 1).clamp(0, QUALITIES - 1)
    lo = pos.floor().long().clamp(max=QUALITIES - 2)
    frac = pos - lo
    return torch.exp(logs[lo] * (1 - frac) + logs[lo + 1] * frac)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class RatePass(NamedTuple):
    """What the entropy model makes of a gained latent y (``VariableRateCodec.rate``), by level name."""

    bits: dict[str, torch.Tensor]  # bits per sample (B,)
    latents: dict[str, torch.Tensor]  # y and the hyper-latents, before quantisation
    decoded: dict[str, torch.Tensor]  # the quantised latents as the decoder sees them
    features: dict[str, torch.Tensor]  # hyper-synthesis outputs, by hyper-synthesis name


class HyperSynthesis(nn.Module):
    """Hyper-decoder: ``trunk`` gives features (used by coarse2fine's synthesis), ``head`` gives
    (mean, scale position) or scale position only. Made of Conv2d, ReLU and SubpixelUp only, which
    is what ``models.integer_hyper`` can turn into a bit-exact integer network."""

    def __init__(self, trunk: nn.Sequential, head: nn.Sequential, channels: int, has_mean: bool):
        super().__init__()
        self.trunk, self.head = trunk, head
        self.channels, self.has_mean = channels, has_mean
        last = head[-1]
        with torch.no_grad():  # start near sigma ~ 1: scale position t = ln(1/0.11)/step ~ 18
            last.bias[-channels:].fill_(18.0)

    def forward(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = self.trunk(z_hat)
        out = self.head(features)
        if self.has_mean:
            mean, position = out[:, : self.channels], out[:, self.channels :]
        else:
            mean, position = torch.zeros_like(out), out
        return features, mean, position


def _relu_chain(*layers: nn.Module) -> nn.Sequential:
    """Interleave ReLU between layers (not after the last)."""
    out: list[nn.Module] = []
    for i, layer in enumerate(layers):
        out.append(layer)
        if i < len(layers) - 1:
            out.append(nn.ReLU())
    return nn.Sequential(*out)


def analysis_transform(n: int, m: int) -> nn.Sequential:
    return nn.Sequential(conv(3, n), GDN(n), conv(n, n), GDN(n), conv(n, n), GDN(n), conv(n, m))


def synthesis_transform(m: int, n: int) -> nn.Sequential:
    return nn.Sequential(
        deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True),
        deconv(n, n), GDN(n, inverse=True), deconv(n, 3),
    )


class VariableRateCodec(nn.Module):
    """Shared parts: the quality gain vectors (Cui et al. 2021) and the rate/distortion bookkeeping.

    Every subclass codes ``y = g_a(x) * gain(q)`` and synthesizes from ``y_hat * inv_gain(q)``, where
    gain and inv_gain are two learned per-channel vectors per integer quality, interpolated
    geometrically between them. In the diagrams below ``Q`` rounds (uniform noise in training), ``EB``
    is the factorized entropy bottleneck (one density per channel), ``GC`` the Gaussian conditional
    whose means and scales a hyper-synthesis predicts, ``(c, 1/s)`` a tensor of c channels at 1/s of
    the image's width and height, and ``y_hat = Q(y - mean) + mean`` where a mean is predicted.

    Args:
        latent_channels (int): channels of y, the length of each gain vector.
    """

    architecture: str = ""
    synthesis_features: tuple[str, ...] = ()  # hyper-synthesis outputs the synthesis reads

    def __init__(self, latent_channels: int):
        super().__init__()
        init = torch.linspace(-1.2, 1.2, QUALITIES).unsqueeze(1).expand(QUALITIES, latent_channels)
        self.log_gain = nn.Parameter(init.clone())
        self.log_inverse_gain = nn.Parameter(-init.clone())

    def gains(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and inverse gain for fractional qualities q (B,), geometric interpolation."""
        pos = (q - 1).clamp(0, QUALITIES - 1)
        lo = pos.floor().long().clamp(max=QUALITIES - 2)
        frac = (pos - lo).unsqueeze(1)

        def interp(table: torch.Tensor) -> torch.Tensor:
            return torch.exp(table[lo] * (1 - frac) + table[lo + 1] * frac)[:, :, None, None]

        return interp(self.log_gain), interp(self.log_inverse_gain)

    # Subclasses implement these three; forward() is shared.
    def levels(self) -> list[Level]:
        raise NotImplementedError

    def hyper_analysis(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Latents above y, by level name."""
        raise NotImplementedError

    def synthesize(self, y_hat: torch.Tensor, features: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, q: torch.Tensor, noise: bool = True, straight_through: bool = True,
                synthesize: bool = True, levels: list[Level] | None = None,
                density: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Training/eval pass. Returns x_hat (unless ``synthesize`` is off), bits per sample (B,), and the
        latents and hyper features by name (as in ``RatePass``; training's helping losses read them).

        noise: rates of noisy latents (training) or of the rounded ones. straight_through: the synthesis
        sees rounded latents either way; with it, gradients pass the rounding to the analysis, without it
        they stop there, and a predicted mean gets its exact gradient (the decoded value is symbol + mean),
        which is what a decoder-side fine-tune on the real, rounded latents wants. Without synthesis the
        pass is the rate alone, which is all an entropy-model fit (``entropy_parameters``) needs.
        ``levels`` and ``density`` as in ``rate``.

        Under autocast only g_a and the synthesis run in reduced precision: the hyper networks and
        likelihoods stay in fp32, since means and rates are precision-sensitive and cheap (1/16 scale).
        """
        gain, inverse_gain = self.gains(q)
        y = self.g_a(x).float() * gain
        with torch.autocast(x.device.type, enabled=False):
            coded = self.rate(y, noise, straight_through, levels, density)
        out = {"bits": sum(coded.bits.values()), "latents": coded.latents, "features": coded.features}
        if synthesize:
            out["x_hat"] = self.synthesize(coded.decoded["y"] * inverse_gain, coded.features)
        return out

    def rate(self, y: torch.Tensor, noise: bool = True, straight_through: bool = True,
             levels: list[Level] | None = None, density: nn.Module | None = None) -> RatePass:
        """The entropy model on a (gained) latent y, level by level, coarsest first. ``noise`` and
        ``straight_through`` as in ``forward``. A training stage may code fewer ``levels`` (the finest
        of ``levels()``), the coarsest under its own ``density`` instead of the bottleneck
        (models/fine_first.py)."""
        latents = {"y": y, **self.hyper_analysis(y)}
        bits: dict[str, torch.Tensor] = {}
        decoded: dict[str, torch.Tensor] = {}
        features: dict[str, torch.Tensor] = {}
        for level in levels or self.levels():
            value = latents[level.name]
            coded = value + torch.empty_like(value).uniform_(-0.5, 0.5) if noise else torch.round(value)
            if level.hyper is None:
                likelihood = (density or self.entropy_bottleneck).likelihood(coded)
                decoded[level.name] = ste_round(value) if straight_through else torch.round(value)
            else:
                feats, mean, position = getattr(self, level.hyper)(decoded[self.hyper_source(level.name)])
                features[level.hyper] = feats
                if not noise:
                    coded = torch.round(value - mean) + mean
                likelihood = gaussian_likelihood(coded, mean, scale_from_position(position))
                decoded[level.name] = (ste_round(value - mean) if straight_through else torch.round(value - mean)) + mean
            bits[level.name] = -torch.log2(likelihood).flatten(1).sum(1)
        return RatePass(bits, latents, decoded, features)

    def entropy_parameters(self) -> list[nn.Parameter]:
        """The entropy model: hyper-analyses, hyper-syntheses and the bottleneck, all that the rate of a
        given y depends on (the gains and g_a make y; the synthesis does not touch the rate)."""
        return [p for name, p in self.named_parameters() if name.startswith(("h_a", "h_s", "entropy_bottleneck"))]

    def hyper_source(self, level_name: str) -> str:
        """The decoded latent a level's hyper-synthesis reads: the next coarser level."""
        names = [lv.name for lv in self.levels()]
        return names[names.index(level_name) - 1]

    def config(self) -> dict:
        return {"architecture": self.architecture, **self.widths}


class FactorizedPrior(VariableRateCodec):
    """Factorized prior (Ballé et al. 2017, 2018; CompressAI's ``bmshj2018-factorized``).

    .. code-block:: none

        x --> g_a --> *gain(q) --> y --> Q --> y_hat --> *inv_gain(q) --> g_s --> x_hat
                           (m, 1/16)           |
                                               EB --> bits of y

    g_a: four 5x5 stride-2 convolutions with GDN between them; g_s: the mirror image, transposed
    convolutions with IGDN. One latent level, y, coded with per-channel factorized tables.

    Args:
        n (int): channels of the hidden layers of g_a and g_s.
        m (int): channels of the latent y.
    """

    architecture = "factorized"

    def __init__(self, n: int = 128, m: int = 192):
        super().__init__(m)
        self.widths = {"n": n, "m": m}
        self.g_a, self.g_s = analysis_transform(n, m), synthesis_transform(m, n)
        self.entropy_bottleneck = EntropyBottleneck(m)

    def levels(self) -> list[Level]:
        return [Level("y", self.widths["m"], 16, None)]

    def hyper_analysis(self, y):
        return {}

    def synthesize(self, y_hat, features):
        return self.g_s(y_hat)


class ScaleHyperprior(VariableRateCodec):
    """Scale hyperprior (Ballé, Minnen, Singh, Hwang, Johnston 2018), zero-mean; ``mean-scale``
    subclasses it to add predicted means (Minnen 2018).

    .. code-block:: none

        x --> g_a --> *gain(q) --> y -+-> |y| --> h_a --> z --> Q --> z_hat --> h_s --> scales
                           (m, 1/16)  |               (n, 1/64) |                          |
                                      |                        EB --> bits of z            |
                                      +--> Q --> y_hat <-- GC (mean 0, scales) <-----------+
                                                   |        |
                                                   |        +--> bits of y
                                                   +--> *inv_gain(q) --> g_s --> x_hat

    g_a and g_s as in ``FactorizedPrior``. h_a: a 3x3 stride-1 convolution then two 5x5 stride-2
    ones, LeakyReLU between. h_s: two sub-pixel x2 up-samplings and a 3x3 head to one scale position
    per channel of y, ReLU between (only what ``models.integer_hyper`` makes bit-exact). Levels,
    coarsest first: z (factorized tables), then y (Gaussian, from h_s).

    Args:
        n (int): channels of the hidden layers of g_a and g_s, and of z and the hyper networks.
        m (int): channels of the latent y.
    """

    architecture = "hyperprior"
    predicts_mean = False

    def __init__(self, n: int = 128, m: int = 192):
        super().__init__(m)
        self.widths = {"n": n, "m": m}
        self.g_a, self.g_s = analysis_transform(n, m), synthesis_transform(m, n)
        self.h_a = nn.Sequential(conv(m, n, 3, 1), nn.LeakyReLU(), conv(n, n), nn.LeakyReLU(), conv(n, n))
        head_width = n * 3 // 2 if self.predicts_mean else n
        outputs = 2 * m if self.predicts_mean else m
        self.h_s = HyperSynthesis(
            trunk=_relu_chain(SubpixelUp(n, n), SubpixelUp(n, head_width)),
            head=nn.Sequential(nn.ReLU(), nn.Conv2d(head_width, outputs, 3, padding=1)),
            channels=m,
            has_mean=self.predicts_mean,
        )
        self.entropy_bottleneck = EntropyBottleneck(n)

    def levels(self) -> list[Level]:
        return [Level("z", self.widths["n"], 64, None), Level("y", self.widths["m"], 16, "h_s")]

    def hyper_analysis(self, y):
        return {"z": self.h_a(y if self.predicts_mean else y.abs())}

    def synthesize(self, y_hat, features):
        return self.g_s(y_hat)


class MeanScaleHyperprior(ScaleHyperprior):
    """Mean-scale hyperprior (Minnen, Ballé, Toderici 2018) without its serial context model:
    the hyperprior predicts a mean as well as a scale for every element of y.

    .. code-block:: none

        x --> g_a --> *gain(q) --> y -+-> h_a --> z --> Q --> z_hat --> h_s --> (means, scales)
                           (m, 1/16)  |       (n, 1/64) |                              |
                                      |                EB --> bits of z                |
                                      +--> Q --> y_hat <-- GC (means, scales) <--------+
                                                   |        |
                                                   |        +--> bits of y
                                                   +--> *inv_gain(q) --> g_s --> x_hat

    As ``ScaleHyperprior``, except that h_a reads y itself (not |y|), h_s's second up-sampling and
    head are 3n/2 wide and give 2m channels (m means, m scale positions), and y is coded as
    Q(y - means) + means.

    Args:
        n (int): channels of the hidden layers of g_a and g_s, and of z and the hyper networks.
        m (int): channels of the latent y.
    """

    architecture = "mean-scale"
    predicts_mean = True


class CoarseToFine(VariableRateCodec):
    """Coarse-to-fine hyperprior (Hu, Yang, Liu, AAAI 2020), without serial context: two hyper levels,
    each predicting the means and scales of the level below it, and a synthesis that also reads the
    hyper features.

    .. code-block:: none

        x --> g_a --> *gain(q) --> y --> h_a2 --> z2 --> h_a1 --> z1
                           (m, 1/16)        (h2, 1/32)       (h1, 1/64)

        decoded coarsest first:
        z1 --> Q --> z1_hat (EB) --> h_s1 --> f1 (h2, 1/32), means and scales of z2
        z2 --> Q --> z2_hat (GC) --> h_s2 --> f2 (m, 1/16),  means and scales of y
        y  --> Q --> y_hat  (GC)

        y_hat --> *inv_gain(q) --> g_s ----------> (n, 1/2) --+
                                                              +--> cat --> u (2n, 1/2)
        [f2, depth_to_space(f1)] --> aggregate --> (n, 1/2) --+
        u + fuse(u) --> reconstruct --> x_hat

    g_a as in ``FactorizedPrior``; g_s is its synthesis cut at 1/2 resolution (three transposed
    convolutions with IGDN), aggregate three transposed convolutions with ReLU, fuse three 3x3
    convolutions (a residual on the 2n channels of u), reconstruct one transposed convolution to
    full resolution and a 3x3 convolution to RGB. h_a2 and h_a1: two 3x3 stride-1 convolutions and a
    5x5 stride-2 one, LeakyReLU between. h_s1 and h_s2: a 3x3 convolution and a sub-pixel x2
    up-sampling (their features f1, f2), then a head of two 3x3 convolutions (a 5x5 receptive
    field) to means and scale positions.

    Args:
        n (int): channels of g_a and of the synthesis' hidden layers.
        m (int): channels of the main latent y (paper: 192).
        h2 (int): channels of the fine hyper-latent z2 (paper: 256).
        h1 (int): channels of the coarse hyper-latent z1 (paper: 128).
    """

    architecture = "coarse2fine"
    synthesis_features = ("h_s1", "h_s2")

    def __init__(self, n: int = 128, m: int = 192, h2: int = 128, h1: int = 64):
        super().__init__(m)
        self.widths = {"n": n, "m": m, "h2": h2, "h1": h1}
        self.g_a = analysis_transform(n, m)
        self.h_a2 = nn.Sequential(conv(m, m, 3, 1), nn.LeakyReLU(), conv(m, h2, 3, 1), nn.LeakyReLU(), conv(h2, h2))
        self.h_a1 = nn.Sequential(conv(h2, h2, 3, 1), nn.LeakyReLU(), conv(h2, h1, 3, 1), nn.LeakyReLU(), conv(h1, h1))
        # Start the hyper path open: by default initialisation z2 starts at about a tenth of y's magnitude
        # and z1 at a fiftieth of it, so both round to zero and carry nothing. Scaled, both start near
        # y's magnitude: 3-10% less rate at equal steps fitting an entropy model to the default's latents
        # (docs/training.md, "Stage 1 on the CPU"); the rate alone then sheds most of it within tens of steps.
        with torch.no_grad():
            self.h_a2[-1].weight.mul_(10.0)
            self.h_a1[-1].weight.mul_(10.0)
        self.entropy_bottleneck = EntropyBottleneck(h1)
        # Hyper-synthesis: "signal-preserving" up-sampling trunk, then a 5x5-receptive-field predictor.
        self.h_s1 = HyperSynthesis(
            trunk=_relu_chain(nn.Conv2d(h1, h1 * 2, 3, padding=1), SubpixelUp(h1 * 2, h2)),
            head=_predictor(h2, h2),
            channels=h2,
            has_mean=True,
        )
        self.h_s2 = HyperSynthesis(
            trunk=_relu_chain(nn.Conv2d(h2, h2 * 2, 3, padding=1), SubpixelUp(h2 * 2, m)),
            head=_predictor(m, m),
            channels=m,
            has_mean=True,
        )
        # Synthesis: truncated main decoder to 1/2 resolution, plus information aggregation of h2 and h1.
        self.g_s = nn.Sequential(
            deconv(m, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True), deconv(n, n), GDN(n, inverse=True)
        )
        self.aggregate = nn.Sequential(
            deconv(m + h2 // 4, n), nn.ReLU(), deconv(n, n), nn.ReLU(), deconv(n, n), nn.ReLU()
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * n, n, 3, padding=1), nn.ReLU(), nn.Conv2d(n, n, 3, padding=1), nn.ReLU(),
            nn.Conv2d(n, 2 * n, 3, padding=1),
        )
        self.reconstruct = nn.Sequential(deconv(2 * n, n // 2), nn.ReLU(), nn.Conv2d(n // 2, 3, 3, padding=1))

    def levels(self) -> list[Level]:
        w = self.widths
        return [Level("z1", w["h1"], 64, None), Level("z2", w["h2"], 32, "h_s1"), Level("y", w["m"], 16, "h_s2")]

    def hyper_analysis(self, y):
        z2 = self.h_a2(y)
        return {"z2": z2, "z1": self.h_a1(z2)}

    def synthesize(self, y_hat, features):
        h2, h1 = features["h_s2"], features["h_s1"]
        side = self.aggregate(torch.cat([h2, nn.functional.pixel_shuffle(h1, 2)], dim=1))
        main = self.g_s(y_hat)
        fused = torch.cat([main, side], dim=1)
        return self.reconstruct(fused + self.fuse(fused))


def _predictor(cin: int, channels: int) -> nn.Sequential:
    """Mean/scale prediction with a 5x5 receptive field on the hyper features (two 3x3 convs)."""
    return nn.Sequential(
        nn.ReLU(), nn.Conv2d(cin, cin, 3, padding=1), nn.ReLU(), nn.Conv2d(cin, 2 * channels, 3, padding=1)
    )


ARCHITECTURES: dict[str, type[VariableRateCodec]] = {
    cls.architecture: cls for cls in (FactorizedPrior, ScaleHyperprior, MeanScaleHyperprior, CoarseToFine)
}


def build(config: dict) -> VariableRateCodec:
    widths = {k: v for k, v in config.items() if k != "architecture"}
    return ARCHITECTURES[config["architecture"]](**widths)


def padding_multiple(model: VariableRateCodec) -> int:
    return max(level.stride for level in model.levels())


__all__ = ["ARCHITECTURES", "LAMBDAS", "QUALITIES", "Level", "RatePass", "VariableRateCodec", "build", "lambda_for_quality"]
