"""The film generator, top to bottom: a KL autoencoder for grey films, a latent diffusion U-Net, the
condition space that ties the three modalities together, and a finding classifier on noisy latents that
guides sampling. Networks and schedulers are MONAI's.

The condition reaches the U-Net two ways:
- a sequence of tokens it cross-attends to:
  [view to make] [report embedding] [report findings] [other view latent, one token per 4x4 patch];
- the view, report and findings summed into one vector added to the timestep embedding of every block,
  as a class label would be. Through cross-attention alone the report was one token among 67, and the
  first model learned to ignore it (its held-out loss was the same with the report, another patient's
  report, or none).
Each of report and other view may be absent (a learned "absent" token stands in), which is what lets one
model take any subset of inputs: training draws which are present ("multi-prompt"), and drops them all
now and then so that sampling can use classifier-free guidance.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from monai.networks.nets import AutoencoderKL, DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import DiffusionModelEncoder
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from torch import nn

from xr.findings import FINDINGS
from xr.modeling import Pretrained
from xr.views import VIEWS

GENERATED_FINDINGS = [f for f in FINDINGS if f != "No Finding"]
SCHEDULE: dict[str, Any] = {"schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0195}  # MONAI's LDM tutorials
# classifier-free guidance. Chosen for films 0.3.0 between 3 and 5 on generated films alone (seed 7; eval's
# are 1000 on): the eye's mean AUC for films made for each finding against the normal report's, 0.67 at
# 3 and 0.73 at 5; the validation frontals' Xception FD (generated from their reports) 44.7 and 44.2
GUIDANCE = 5.0
GUIDE_DIR = "guide"  # the finding guide's folder, inside the generator's


@dataclass
class FilmGeneratorConfig:
    size: int = 256  # films are square, grey, in [0, 1]
    latent_channels: int = 4
    # three halvings: 256 -> 32, LDM's usual factor 8, so the denoiser works on the 32 x 32 grid it had at
    # 128 px and costs what it cost. At 128 px, squeezing to 16 x 16 lost the ribs (Xception FD 88-94 of the
    # validation frontals' reconstructions, 32 x 32: 54). The full-size stage has 16 channels: a training step
    # costs 1.6 times a 128-px step, 2.3 times with 32 channels (measured on 2 CPU cores, batch 16)
    ae_channels: list[int] = field(default_factory=lambda: [16, 32, 64, 64])
    # two channels per group at the full-size stage, as 0.3.0 had: with one (instance normalisation) the
    # decoder's last layers lose each film's brightness, and the validation L1 stalled at 0.20 (measured:
    # 0.19 after 40 steps on 80 films, against 0.12 with two)
    ae_norm_groups: int = 8
    unet_channels: list[int] = field(default_factory=lambda: [64, 128, 192])
    unet_attention: list[bool] = field(default_factory=lambda: [False, True, True])
    cond_dim: int = 128
    text_dim: int = 384  # MiniLM (xr.encode.text)
    findings: list[str] = field(default_factory=lambda: list(GENERATED_FINDINGS))
    patch: int = 4  # the other view's latent, cut into patch x patch tokens (8 x 8 of them)
    train_timesteps: int = 1000
    latent_scale: float = 1.0  # 1 / std of the training latents, set after the autoencoder is trained
    start_step: int = 999  # sampling starts here, from the view's mean training latent noised to this step
    version: str = "films 0.5.0"  # 0.5: films 0.4.0 with its decoder trained on alone (train-films --decoder-only)

    @property
    def latent_size(self) -> int:
        return self.size // 2 ** (len(self.ae_channels) - 1)

    @property
    def other_tokens(self) -> int:
        return (self.latent_size // self.patch) ** 2


@dataclass
class Condition:
    """What a batch of films is made from. `report`/`findings` and `other` are zero where absent, and the
    `has_` masks say so."""
    view: torch.Tensor  # (B,) index into VIEWS: the film to make
    report: torch.Tensor  # (B, text_dim) MiniLM embedding of the report
    findings: torch.Tensor  # (B, findings) 0/1: the report's findings by our labeler, or ticked by a user
    other: torch.Tensor  # (B, latent_channels, s, s) the other view's scaled latent
    has_report: torch.Tensor  # (B,) bool
    has_other: torch.Tensor  # (B,) bool

    def to(self, device) -> Condition:
        return Condition(*(getattr(self, f.name).to(device) for f in fields(self)))

    def rows(self, start: int, stop: int) -> Condition:
        return Condition(*(getattr(self, f.name)[start:stop] for f in fields(self)))

    def without_inputs(self) -> Condition:
        """The same films asked for with nothing given: the unconditional branch of guidance."""
        none = torch.zeros_like(self.has_report)
        return Condition(self.view, self.report, self.findings, self.other, none, none)


class ConditionEncoder(nn.Module):
    def __init__(self, c: FilmGeneratorConfig) -> None:
        super().__init__()
        d = c.cond_dim
        self.patch = c.patch
        self.view = nn.Embedding(len(VIEWS), d)
        self.report = nn.Linear(c.text_dim, d)
        self.findings = nn.Linear(len(c.findings), d)
        self.other = nn.Linear(c.latent_channels * c.patch ** 2, d)
        self.other_position = nn.Parameter(torch.randn(c.other_tokens, d) * 0.02)
        self.absent = nn.Parameter(torch.randn(3, d) * 0.02)  # report, findings, other view
        self.norm = nn.LayerNorm(d)

    def forward(self, cond: Condition) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B, 3 + other_tokens, d), global vector (B, d))."""
        p = self.patch
        view = self.view(cond.view)
        report = torch.where(cond.has_report[:, None], self.report(cond.report), self.absent[0])
        findings = torch.where(cond.has_report[:, None], self.findings(cond.findings), self.absent[1])
        patches = nn.functional.pixel_unshuffle(cond.other, p).flatten(2).transpose(1, 2)  # (B, tokens, C*p*p)
        other = torch.where(cond.has_other[:, None, None], self.other(patches) + self.other_position, self.absent[2])
        tokens = torch.cat([view[:, None], report[:, None], findings[:, None], other], 1)
        return self.norm(tokens), view + report + findings


@dataclass
class FindingGuideConfig:
    latent_channels: int = 4
    latent_size: int = 32
    channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    findings: list[str] = field(default_factory=lambda: list(GENERATED_FINDINGS))
    scale: float = 0.0  # the gradient's weight in sampling, chosen on validation patients by train-films; 0: off


class FindingGuide(Pretrained):
    """Classifier guidance (Dhariwal & Nichol 2021): a finding classifier that reads noisy latents, whose
    gradient pushes each denoising step towards the findings asked for, on top of classifier-free guidance.
    With classifier-free guidance alone films 0.3.0 drew one of the four findings the eye reads on real
    films recognisably: the denoiser learns the report as one condition among several, this classifier
    learns nothing but the findings. MONAI's `DiffusionModelEncoder` (the classifier of its guidance
    tutorial; timestep and view in its embedding). A model of its own in `guide/` beside the generator's
    weights, so it is retrained, or left out, without touching them."""
    config_class = FindingGuideConfig

    def __init__(self, config: FindingGuideConfig) -> None:
        super().__init__(config)
        c = config
        self.net = DiffusionModelEncoder(
            spatial_dims=2, in_channels=c.latent_channels, out_channels=len(c.findings),
            input_shape=(c.latent_size, c.latent_size), channels=c.channels, attention_levels=[False] * len(c.channels),
            num_res_blocks=1, norm_num_groups=16, num_class_embeds=len(VIEWS))

    def forward(self, latents: torch.Tensor, t: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """Each finding's logit for noisy scaled latents at timesteps `t`, of films of `view`."""
        return self.net(latents, timesteps=t, class_labels=view)

    def gradient(self, latents: torch.Tensor, t: torch.Tensor, view: torch.Tensor, findings: torch.Tensor) -> torch.Tensor:
        """d log p(findings | latents) / d latents, each row for its own findings (asked 1, not asked 0)."""
        with torch.enable_grad():
            x = latents.detach().requires_grad_(True)
            log_p = -nn.functional.binary_cross_entropy_with_logits(self(x, t, view), findings, reduction="sum")
            return torch.autograd.grad(log_p, x)[0]


class FilmGenerator(Pretrained):
    config_class = FilmGeneratorConfig
    mean_latent: torch.Tensor

    def __init__(self, config: FilmGeneratorConfig) -> None:
        super().__init__(config)
        c = config
        self.autoencoder = AutoencoderKL(
            spatial_dims=2, in_channels=1, out_channels=1, channels=c.ae_channels, latent_channels=c.latent_channels,
            num_res_blocks=1, attention_levels=[False] * len(c.ae_channels), norm_num_groups=c.ae_norm_groups,
            with_encoder_nonlocal_attn=False, with_decoder_nonlocal_attn=False)
        self.unet = DiffusionModelUNet(
            spatial_dims=2, in_channels=c.latent_channels, out_channels=c.latent_channels, channels=c.unet_channels,
            attention_levels=c.unet_attention, num_res_blocks=1, num_head_channels=32, with_conditioning=True,
            cross_attention_dim=c.cond_dim, num_class_embeds=1)
        # MONAI's class embedding is a lookup of one label; ours maps the global condition vector to the
        # same place (the forward pass adds `class_embedding(class_labels)` to the timestep embedding)
        width = c.unet_channels[0] * 4
        self.unet.class_embedding = nn.Sequential(  # type: ignore[assignment]  # typed as the Embedding it replaces
            nn.Linear(c.cond_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.condition = ConditionEncoder(c)
        # each view's mean training latent: where sampling starts (see `sample`), saved with the weights
        self.register_buffer("mean_latent", torch.zeros(len(VIEWS), c.latent_channels, c.latent_size, c.latent_size))

    # ---- the autoencoder: films <-> scaled latents ----------------------------------------------------
    def encode(self, films: torch.Tensor) -> torch.Tensor:
        """(B, 1, size, size) in [0, 1] -> (B, C, s, s) latents, scaled to about unit variance."""
        mu, _ = self.autoencoder.encode(films * 2 - 1)
        return mu * self.config.latent_scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return ((self.autoencoder.decode(latents / self.config.latent_scale) + 1) / 2).clamp(0, 1)

    # ---- the denoiser --------------------------------------------------------------------------------
    def forward(self, noisy: torch.Tensor, t: torch.Tensor, cond: Condition) -> torch.Tensor:
        """The noise in `noisy` at timesteps `t`, given the condition."""
        tokens, vector = self.condition(cond)
        return self.unet(noisy, timesteps=t, context=tokens, class_labels=vector)

    def noise_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler(num_train_timesteps=self.config.train_timesteps, **SCHEDULE)

    @torch.no_grad()  # not inference_mode: the guide's gradient is taken inside
    def sample(self, cond: Condition, generator: torch.Generator, steps: int = 30, guidance: float = GUIDANCE,
               guide: FindingGuide | None = None, progress: Callable[[float], None] = lambda fraction: None) -> torch.Tensor:
        """Films for `cond` by DDIM, with classifier-free guidance: the prediction with the inputs is pushed
        away from the prediction without them by `guidance`. With a `guide`, the rows made from a report
        are also pushed along its gradient towards the report's findings, `guide.config.scale` times
        (the noise estimate moves by -sqrt(1 - alpha_bar_t) scale grad log p(findings | x_t)).

        Sampling starts at `start_step`, from the view's mean training latent noised to that step (a
        truncated reverse process, as SDEdit starts from a guide image): trained on a few hundred films for
        a few thousand steps, the model forms a film from pure noise no better than the mean film does
        above that step (`xr.train.films.choose_start`), so the steps above it are not run."""
        c = self.config
        scheduler = DDIMScheduler(num_train_timesteps=c.train_timesteps, clip_sample=False, **SCHEDULE)
        scheduler.set_timesteps(max(1, round(steps * c.train_timesteps / (c.start_step + 1))))
        timesteps = [int(t) for t in scheduler.timesteps if t <= c.start_step][:steps]
        b = cond.view.shape[0]
        noise = torch.randn((b, c.latent_channels, c.latent_size, c.latent_size), generator=generator)
        x = scheduler.add_noise(self.mean_latent[cond.view], noise, torch.full((b,), timesteps[0]))
        (tokens, vector), (tokens0, vector0) = self.condition(cond), self.condition(cond.without_inputs())
        context, labels = torch.cat([tokens, tokens0]), torch.cat([vector, vector0])
        if guide is not None and (guide.config.scale == 0 or not bool(cond.has_report.any())):
            guide = None
        asked = cond.has_report[:, None, None, None].float()
        for i, t in enumerate(timesteps):
            eps_in, eps_out = self.unet(torch.cat([x, x]), timesteps=torch.full((2 * b,), t), context=context,
                                        class_labels=labels).chunk(2)
            eps = eps_out + guidance * (eps_in - eps_out)
            if guide is not None:
                grad = guide.gradient(x, torch.full((b,), t), cond.view, cond.findings)
                eps = eps - (1 - scheduler.alphas_cumprod[t]).sqrt() * guide.config.scale * asked * grad
            x, _ = scheduler.step(eps, t, x)
            progress((i + 1) / len(timesteps))
        return self.decode(x)
