"""`python -m xr train-films`: the film generator (xr.generate.model) in two stages, on the training part
only (the patients xr.data.split does not hold out):

1. the autoencoder: L1 reconstruction, a small KL term and a perceptual term, with small random shifts,
   turns and zooms (the recipe of MONAI's latent diffusion tutorials without their adversarial loss). Their
   perceptual network needs weights we cannot fetch here, so the perceptual term compares the films in
   the first two stages of our lung U-Net's VGG encoder (`ChestPerceptual`). It was not compared with L1
   alone here: what brought the ribs back was the larger latent (xr.generate.model's `ae_channels`).
   Time is what this stage lacks most: continuing films 0.2.0's 10-minute autoencoder 8 more minutes
   took its reconstructions of the validation frontals from Xception FD 64.5 to 32.5 (at lr 1e-4: 47.0;
   with MONAI's patch discriminator at the tutorial's weight 0.01, lr 1e-4: 47.8, so no adversarial
   term), hence 35 of the default 65 minutes at 256 px (0.2.0's denoiser's validation loss was flat
   after 21 of its 30), and the epoch with the lowest validation L1 is kept;
2. the latent denoiser and the condition space, the autoencoder frozen. Multi-prompt, as in MedCoDi-M:
   each example of a patient with both views is made from its report, from its other view or from both
   (a third each); a film without its other view, from its report; and one example in ten from nothing,
   so that sampling can use classifier-free guidance. A film without a report (NIH, covid_cxr_views) is
   given the report the site would write for its labels (xr.generate.anytoany.report_for).
Both stages draw their epochs label-balanced (`balanced_draws`), so the rare findings are seen.

Three parts, by a hash of the patient: the held-out part (xr.data.split, 30 %) that only eval-generation
reads; a validation part (the next 10 %) for training's own checks, the loss curves and where sampling
starts (`choose_start`); the rest trains. Each stage stops at its time budget or epoch count; after every
epoch the validation films' loss (fixed noise and timesteps, so epochs compare) is logged and plotted. One
command on a CPU, a GPU or several (xr.train.engine).
"""
from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import RandAffine
from tqdm import tqdm

from xr.config import ASSETS
from xr.data.films import LabelledFilm
from xr.data.split import is_validation
from xr.decode.wording import Wording
from xr.encode.lung_unet import LungUNet
from xr.generate.evaluation import GUIDE_SCALES, choose_guide_scale
from xr.generate.filmset import FilmSet, prepare
from xr.generate.model import GUIDE_DIR, Condition, FilmGenerator, FilmGeneratorConfig, FindingGuide, FindingGuideConfig
from xr.train.engine import accelerator, agree, seed_everything, shard
from xr.views import FRONTAL, VIEWS

P_NOTHING = 0.1  # examples made from no input: the unconditional branch of guidance
KL_WEIGHT = 1e-6
PERCEPTUAL_WEIGHT = 1.0  # taming-transformers' and MONAI's 2-D LDM tutorial's weight beside L1
# the perceptual term at 128 px: on 256-px films it took a training step from 5.8 to 9.4 s (2 CPU cores,
# batch 16), and this stage is short of time, not of a loss
PERCEPTUAL_SIZE = 128
VALIDATION_UPTO = 0.4  # patients hashed below this but not held out (xr.data.split: below 0.3) validate


class ChestPerceptual(torch.nn.Module):
    """LPIPS's measure without its learned layer weights: each stage's features unit-normalised over
    channels, squared differences averaged, stages summed. The stages are the lung U-Net's first two,
    trained on chest films (the chest encoder's feature space, which eval-generation also measures, is
    the third stage on: not these)."""

    def __init__(self, depth: int = 2, size: int = PERCEPTUAL_SIZE) -> None:
        super().__init__()
        self.unet = LungUNet.from_pretrained(ASSETS / "lung_unet").eval().requires_grad_(False)
        self.depth, self.size = depth, size

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a, b: (B, 1, H, W) in [-1, 1], the autoencoder's scale. That is twice the range the U-Net was
        trained on (x/255 - 0.5); features unit-normalised per pixel still compare structure, and every
        setting of this stage was chosen with it so (halving it is untried). Films larger than `size` are
        compared at `size` (area-averaged); L1 keeps the full-size detail."""
        if a.shape[-1] > self.size:
            a, b = (torch.nn.functional.interpolate(x, size=self.size, mode="area") for x in (a, b))
        unit = lambda f: f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)  # noqa: E731
        return sum(((unit(fa) - unit(fb)) ** 2).sum(1).mean() for fa, fb in
                   zip(self.unet.stages(a, self.depth), self.unet.stages(b, self.depth), strict=True))


def _other_views(data: FilmSet, idx: list[int], latents: torch.Tensor) -> torch.Tensor:
    """Each film's other view's latent, zeros where the patient has none."""
    return torch.stack([latents[data.partner[i]] if data.partner[i] >= 0 else torch.zeros_like(latents[0]) for i in idx])


def multi_prompt(data: FilmSet, idx: list[int], latents: torch.Tensor, rng: random.Random) -> Condition:
    """Each example's inputs drawn as MedCoDi-M's multi-prompt training draws them."""
    has_report, has_other = [], []
    for i in idx:
        if rng.random() < P_NOTHING:
            r, o = False, False
        elif data.partner[i] >= 0:
            r, o = [(True, False), (False, True), (True, True)][rng.randrange(3)]
        else:
            r, o = True, False
        has_report.append(r)
        has_other.append(o)
    other = _other_views(data, idx, latents)
    return Condition(data.view[idx], data.report[idx], data.findings[idx], other, torch.tensor(has_report),
                     torch.tensor(has_other))


def given_everything(data: FilmSet, idx: list[int], latents: torch.Tensor) -> Condition:
    """The validation check's condition: the report, and the other view where the patient has it."""
    other = _other_views(data, idx, latents)
    return Condition(data.view[idx], data.report[idx], data.findings[idx], other, torch.ones(len(idx), dtype=torch.bool),
                     torch.tensor([data.partner[i] >= 0 for i in idx]))


def _plain(t: torch.Tensor) -> torch.Tensor:
    return t.as_tensor() if isinstance(t, MetaTensor) else t


def balanced_draws(data: FilmSet, train: list[int]) -> list[float]:
    """Each training film's weight in an epoch's draw: one over the square root of the number of training
    films with its rarest finding (a normal film: of the normal films). A finding on 12 films is then drawn
    about 8 times as often as one film of 700 normal ones, so the rare findings are seen every epoch; the
    square root (set before any run, not tuned) keeps 12 films from being repeated into memorised ones."""
    labels = data.findings[train] > 0.5
    counts, normal = labels.sum(0), int((~labels.any(1)).sum())
    return [float(counts[row].min() if row.any() else normal) ** -0.5 for row in labels]


def run_stage(stage: str, net: torch.nn.Module, opt: torch.optim.Optimizer, acc, train: list[int], draws: list[float],
              batch: int, minutes: float, epochs: int, rng: random.Random, loss_of: Callable[[list[int]], torch.Tensor],
              check: Callable[[], tuple[str, float]], log, clip: float | None = None, keep_best: bool = False) -> list[dict]:
    """Epochs of `loss_of(batch)` over this process's shard of `train` (each epoch as many films as
    `train`, drawn with replacement by `draws`) until the time budget or the epoch count; after each epoch,
    the validation check (name, value; lower is better). With `keep_best` the network ends with the
    weights of its best epoch: the autoencoder's validation L1 jumps from epoch to epoch at a constant
    learning rate, and films 0.3.0's budget ended on a worse epoch than its best."""
    history: list[dict] = []
    start = time.time()
    best, best_state = float("inf"), None
    for epoch in range(1, epochs + 1):
        net.train()
        order = rng.choices(train, weights=draws, k=len(train))
        mine, losses = shard(order, acc), []
        for s in tqdm(range(0, len(mine), batch), desc=f"{stage} epoch {epoch}", unit="batch", file=sys.stderr,
                      leave=False, disable=not acc.is_main_process):
            loss = loss_of(mine[s:s + batch])
            opt.zero_grad()
            acc.backward(loss)
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            losses.append(loss.item())
        net.eval()
        with torch.no_grad():
            key, value = check()
        minutes_so_far = (time.time() - start) / 60
        history.append({"stage": stage, "epoch": epoch, "train_loss": float(np.mean(losses)), key: value,
                        "minutes": minutes_so_far})
        log(f"{stage} epoch {epoch}: train loss {np.mean(losses):.4f}, {key.replace('_', ' ')} {value:.4f} "
            f"({minutes_so_far:.1f} min)")
        if keep_best and value < best:
            best, best_state = value, {k: v.detach().clone() for k, v in acc.unwrap_model(net).state_dict().items()}
        if agree(acc, minutes_so_far > minutes):  # every process stops at the same epoch
            break
    if best_state is not None:
        acc.unwrap_model(net).load_state_dict(best_state)
        kept = min(history, key=lambda h: h[key])["epoch"]
        history[kept - 1]["kept"] = True
        log(f"{stage}: kept epoch {kept} ({key.replace('_', ' ')} {best:.4f})")
    return history


def train_autoencoder(model: FilmGenerator, data: FilmSet, train: list[int], val: list[int], minutes: float, epochs: int,
                      batch: int, rng: random.Random, log, decoder_only: bool = False) -> list[dict]:
    """With `decoder_only` the encoder is frozen and only the decoder learns: the latents stay as they are,
    so a denoiser and guide trained on them stay valid, and the films they make are decoded better."""
    acc = accelerator()
    ae_net = model.autoencoder
    if decoder_only:
        ae_net.requires_grad_(False)
        for part in (ae_net.post_quant_conv, ae_net.decoder):
            part.requires_grad_(True)
    opt = torch.optim.Adam([p for p in ae_net.parameters() if p.requires_grad], lr=1e-3)
    ae, opt = acc.prepare(model.autoencoder, opt)
    augment = RandAffine(prob=0.7, rotate_range=0.05, scale_range=0.06, translate_range=(5, 5), padding_mode="zeros")
    augment.set_random_state(rng.randrange(2**31))
    perceptual = ChestPerceptual().to(acc.device)

    def loss_of(idx: list[int]) -> torch.Tensor:
        x = torch.stack([_plain(augment(data.pixels(i))) for i in idx]).to(acc.device) * 2 - 1
        rec, mu, sigma = ae(x)
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-8) - 1).sum((1, 2, 3)).mean()
        return (rec - x).abs().mean() + KL_WEIGHT * kl + PERCEPTUAL_WEIGHT * perceptual(rec, x)

    def check() -> tuple[str, float]:
        x = data.pixels(val).to(acc.device) * 2 - 1
        return "validation_l1", float((acc.unwrap_model(ae).reconstruct(x) - x).abs().mean())

    history = run_stage("decoder" if decoder_only else "autoencoder", ae, opt, acc, train, balanced_draws(data, train), batch,
                        minutes, epochs, rng, loss_of, check, log, keep_best=True)
    model.autoencoder = acc.unwrap_model(ae).cpu().requires_grad_(True)
    return history


def scaled_latents(model: FilmGenerator, data: FilmSet, train: list[int]) -> torch.Tensor:
    """Every film's latent, with the scale that gives the training latents unit variance set in the
    config (MONAI's LDM recipe); the films are encoded once, the scale applied after."""
    model.eval()
    model.config.latent_scale = 1.0
    mus = data.latents(model)
    model.config.latent_scale = float(1 / mus[train].std())
    return mus * model.config.latent_scale


def train_denoiser(model: FilmGenerator, data: FilmSet, latents: torch.Tensor, train: list[int], val: list[int],
                   minutes: float, epochs: int, batch: int, rng: random.Random, log) -> list[dict]:
    acc = accelerator()
    for p in model.autoencoder.parameters():
        p.requires_grad_(False)
    scheduler = model.noise_scheduler()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=1e-4)
    net, opt = acc.prepare(model, opt)
    fixed = torch.Generator().manual_seed(0)  # the validation check's noise and timesteps, the same every epoch
    val_noise = torch.randn(latents[val].shape, generator=fixed)
    val_t = torch.randint(0, scheduler.num_train_timesteps, (len(val),), generator=fixed)
    dev = acc.device

    def loss_of(idx: list[int]) -> torch.Tensor:
        z = latents[idx]
        noise = torch.randn_like(z)
        t = torch.randint(0, scheduler.num_train_timesteps, (len(idx),))
        cond = multi_prompt(data, idx, latents, rng).to(dev)
        return torch.nn.functional.mse_loss(net(scheduler.add_noise(z, noise, t).to(dev), t.to(dev), cond), noise.to(dev))

    def check() -> tuple[str, float]:
        pred = acc.unwrap_model(net)(scheduler.add_noise(latents[val], val_noise, val_t).to(dev), val_t.to(dev),
                                     given_everything(data, val, latents).to(dev))
        return "validation_loss", float(torch.nn.functional.mse_loss(pred, val_noise.to(dev)))

    return run_stage("denoiser", net, opt, acc, train, balanced_draws(data, train), batch, minutes, epochs, rng, loss_of,
                     check, log, clip=1.0)


@torch.no_grad()
def choose_start(model: FilmGenerator, data: FilmSet, latents: torch.Tensor, train: list[int], val: list[int]) -> int:
    """Where sampling starts (FilmGenerator.sample): the highest step, of 100, 200 ... 900, at which the
    denoiser's estimate of a validation film's latent from its noised latent and its report is still closer
    to the truth than the mean training latent of its view is; above it the model knows less than the mean.
    Also stores each view's mean training latent in the model."""
    views = data.view[train]
    model.mean_latent.copy_(torch.stack([latents[train][views == v].mean(0) for v in range(len(VIEWS))]))
    z, scheduler = latents[val], model.noise_scheduler()
    baseline = (model.mean_latent[data.view[val]] - z).abs().mean()
    cond = given_everything(data, val, latents).without_inputs()
    cond = Condition(cond.view, cond.report, cond.findings, cond.other, torch.ones(len(val), dtype=torch.bool),
                     cond.has_other)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
    start = 100
    for t in range(100, 1000, 100):
        a = scheduler.alphas_cumprod[t]
        noisy = scheduler.add_noise(z, noise, torch.full((len(val),), t))
        estimate = (noisy - (1 - a).sqrt() * model(noisy, torch.full((len(val),), t), cond)) / a.sqrt()
        if (estimate - z).abs().mean() < baseline:
            start = t
    return start


def train_guide(model: FilmGenerator, data: FilmSet, latents: torch.Tensor, train: list[int], val: list[int],
                minutes: float, epochs: int, batch: int, rng: random.Random, log) -> tuple[FindingGuide, list[dict]]:
    """The finding guide on the training films' latents noised to the steps sampling runs (up to the start
    step): binary cross-entropy on their findings; the epoch with the lowest validation loss is kept."""
    c = model.config
    guide = FindingGuide(FindingGuideConfig(latent_channels=c.latent_channels, latent_size=c.latent_size,
                                            findings=list(c.findings)))
    acc = accelerator()
    scheduler, top = model.noise_scheduler(), c.start_step + 1
    opt = torch.optim.AdamW(guide.parameters(), lr=2e-4, weight_decay=1e-4)
    net, opt = acc.prepare(guide, opt)
    fixed = torch.Generator().manual_seed(0)
    val_noise, val_t = torch.randn(latents[val].shape, generator=fixed), torch.randint(0, top, (len(val),), generator=fixed)
    dev, bce = acc.device, torch.nn.functional.binary_cross_entropy_with_logits

    def loss_of(idx: list[int]) -> torch.Tensor:
        z, t = latents[idx], torch.randint(0, top, (len(idx),))
        noisy = scheduler.add_noise(z, torch.randn_like(z), t)
        return bce(net(noisy.to(dev), t.to(dev), data.view[idx].to(dev)), data.findings[idx].to(dev))

    def check() -> tuple[str, float]:
        noisy = scheduler.add_noise(latents[val], val_noise, val_t)
        logits = acc.unwrap_model(net)(noisy.to(dev), val_t.to(dev), data.view[val].to(dev))
        return "validation_loss", float(bce(logits, data.findings[val].to(dev)))

    history = run_stage("guide", net, opt, acc, train, balanced_draws(data, train), batch, minutes, epochs, rng, loss_of,
                        check, log, keep_best=True)
    return acc.unwrap_model(net).cpu().eval(), history


def plot_curve(history: list[dict], path: Path) -> None:
    """Each stage's training loss and validation loss per epoch, side by side; the decoder's epochs
    (`decoder_only`) continue the autoencoder's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for ax, stages, val_key, val_label in ((axes[0], ("autoencoder", "decoder"), "validation_l1", "validation L1"),
                                           (axes[1], ("denoiser",), "validation_loss", "validation loss")):
        rows = [h for h in history if h["stage"] in stages]
        for key, label in (("train_loss", "training loss, every term"), (val_key, val_label)):
            ax.plot(range(1, len(rows) + 1), [h[key] for h in rows], marker=".", label=label)
        if (first := [i for i, h in enumerate(rows) if h["stage"] == "decoder"][:1]):
            ax.axvline(first[0] + 0.5, color="grey", linestyle=":", label="the decoder alone from here")
        ax.set_title(" + ".join(s for s in stages if any(h["stage"] == s for h in rows)))
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def train_films(films: list[LabelledFilm], out: Path, wording: Wording, ae_minutes: float = 35, minutes: float = 25,
                guide_minutes: float = 5, ae_epochs: int = 200, epochs: int = 1000, batch: int = 16, seed: int = 0,
                config: FilmGeneratorConfig | None = None, guide_only: bool = False, decoder_only: bool = False,
                guide_scales: tuple[float, ...] = GUIDE_SCALES, steps: int = 30,
                log: Callable[[str], None] = print) -> FilmGenerator:
    """The three stages on `films` outside the held-out and validation parts; writes the model (fp16),
    history.json and training_curve.png to `out`, and the finding guide to `out/guide`. `guide_only`:
    the generator in `out` is kept, and only its guide is trained and its scale chosen (among
    `guide_scales`, sampling with `steps` DDIM steps). `decoder_only`: the generator in `out` goes on
    training its decoder for `ae_minutes` (`train_autoencoder`), and nothing else changes."""
    rng = seed_everything(seed)
    if guide_only or decoder_only:
        config = FilmGenerator.from_pretrained(out).config
    config = config or FilmGeneratorConfig()
    t0 = time.time()
    data = prepare(films, config, wording, log)
    validates = [not data.held_out[i] and is_validation(g, VALIDATION_UPTO) for i, g in enumerate(data.groups)]
    train = [i for i in range(len(data.groups)) if not data.held_out[i] and not validates[i]]
    val = [i for i in range(len(data.groups)) if validates[i]]
    if not train or not val:
        from xr.errors import UserError
        raise UserError(f"{len(train)} training and {len(val)} validation films: both parts need films")
    pairs = sum(1 for i in train if data.partner[i] >= 0 and data.view[i] == 0)
    log(f"{len(train)} training films ({pairs} patients with both views), {len(val)} validate, "
        f"{int(data.held_out.sum())} held out for eval-generation; read in {time.time() - t0:.0f} s")
    parts = {"train": len(train), "validation": len(val), "held_out": int(data.held_out.sum()), "train_pairs": pairs}
    if decoder_only:
        model = FilmGenerator.from_pretrained(out)
        history = train_autoencoder(model, data, train, val, ae_minutes, ae_epochs, batch, rng, log, decoder_only=True)
        model.save_pretrained(out, dtype=torch.float16)
        summary = json.loads((out / "history.json").read_text())
        summary["epochs"] = [h for h in summary["epochs"] if h["stage"] != "decoder"] + history
        summary["decoder_minutes"] = (time.time() - t0) / 60
        (out / "history.json").write_text(json.dumps(summary, indent=1) + "\n")
        plot_curve(summary["epochs"], out / "training_curve.png")
        log(f"decoder trained on in {(time.time() - t0) / 60:.1f} min; wrote {out}")
        return model.eval()
    if guide_only:
        model = FilmGenerator.from_pretrained(out).eval()
        latents = data.latents(model)
    else:
        model = FilmGenerator(config)
        history = train_autoencoder(model, data, train, val, ae_minutes, ae_epochs, batch, rng, log)
        latents = scaled_latents(model, data, train)
        history += train_denoiser(model, data, latents, train, val, minutes, epochs, batch, rng, log)
        model = model.cpu().eval()
        model.config.start_step = choose_start(model, data, latents, train, val)
        log(f"sampling starts at step {model.config.start_step} from the mean latent of the view")
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out, dtype=torch.float16)
        summary = {"films": parts, "minutes": (time.time() - t0) / 60, "seed": seed, "epochs": history}
        (out / "history.json").write_text(json.dumps(summary, indent=1) + "\n")
        plot_curve(history, out / "training_curve.png")
        log(f"generator trained in {(time.time() - t0) / 60:.1f} min; wrote {out}")
    t1 = time.time()
    guide, guide_history = train_guide(model, data, latents, train, val, guide_minutes, epochs, 4 * batch, rng, log)
    val_frontal = [i for i in val if VIEWS[int(data.view[i])] == FRONTAL]
    guide.config.scale, choice = choose_guide_scale(model, guide, data, val_frontal, wording, log, guide_scales, steps)
    log(f"finding guide at scale {guide.config.scale:g}")
    guide.save_pretrained(out / GUIDE_DIR, dtype=torch.float16)
    guide_summary = {"films": parts, "minutes": (time.time() - t1) / 60, "seed": seed, "epochs": guide_history,
                     "scale_choice": choice}
    (out / GUIDE_DIR / "history.json").write_text(json.dumps(guide_summary, indent=1) + "\n")
    log(f"trained in {(time.time() - t0) / 60:.1f} min; wrote {out}")
    return model
