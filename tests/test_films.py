"""The second system: films from a report, findings or the other view (the shipped generator), marked
synthetic in pixels and metadata; its training stages and evaluation on tiny real data; the CLI."""
from __future__ import annotations

import csv
import io
import json
import random
import shutil

import numpy as np
import pytest
import torch
from monai.transforms import GaussianSmooth
from PIL import Image

from tests.conftest import SHARED
from tests.test_cli import run
from xr.config import ASSETS, settings
from xr.data.films import load_films, pairs
from xr.data.split import is_validation
from xr.decode.wording import Wording
from xr.generate.anytoany import FilmMaker, GenerationError, findings_vector, report_for, through_frontal
from xr.generate.filmset import FilmSet
from xr.generate.model import Condition, FilmGenerator, FilmGeneratorConfig, FindingGuide, FindingGuideConfig
from xr.generate.synthetic import MARK, png_bytes, provenance_of, watermark
from xr.generate.transforms import to_film
from xr.ingest.study import read_image
from xr.train.engine import accelerator
from xr.train.films import ChestPerceptual, balanced_draws, multi_prompt, run_stage, train_films
from xr.views import FRONTAL, LATERAL

VIEWS_DIR = SHARED / "data" / "covid_cxr_views"
NIH_DIR = SHARED / "data" / "nih_cxr14_sample"
WORDING = Wording.load(ASSETS / "dffg")
TINY = FilmGeneratorConfig(size=32, ae_channels=[16, 16, 16], unet_channels=[32, 32], unet_attention=[False, True],
                           cond_dim=32)


@pytest.fixture(scope="module")
def maker() -> FilmMaker:
    return FilmMaker.from_pretrained(ASSETS / "film_generator", ASSETS / "dffg")


# ---- marking ----------------------------------------------------------------------------------------
def test_a_generated_film_says_synthetic_in_its_pixels_and_its_metadata():
    """The mark is a band added above the film: every row of the film is as it was made (the apices
    included), and our ingest reads the film back without the band."""
    film = np.random.default_rng(0).integers(0, 256, (128, 128), dtype=np.uint8)
    marked = watermark(film)
    band = marked.shape[0] - 128
    assert band > 0 and marked.shape[1] == 128
    assert (marked[band:] == film).all()  # the film untouched
    assert (marked[:band] > 200).sum() > 40 and (marked[:band] == 0).sum() > 40  # white letters on a black band
    png = png_bytes(film, {"model": "films 0.1.0", "seed": 7})
    assert provenance_of(png) == {"model": "films 0.1.0", "seed": 7, "synthetic": True, "band_rows": band}
    img = Image.open(io.BytesIO(png))
    assert MARK in img.text["Description"] and (np.asarray(img) == marked).all()
    read = read_image(png, "synthetic_frontal.png", settings())
    assert read.synthetic and (read.pixels == film).all()  # the film, without its band
    plain = io.BytesIO()
    Image.fromarray(film).save(plain, format="PNG")
    assert provenance_of(plain.getvalue()) is None  # a real film carries no such mark
    assert not read_image(plain.getvalue(), "real.png", settings()).synthetic


# ---- the condition space -----------------------------------------------------------------------------
def test_ticked_findings_become_the_sites_report_and_back():
    names = FilmGeneratorConfig().findings
    for ticked in ([], ["Cardiomegaly"], ["Pleural Effusion", "Support Devices"]):
        report = report_for(ticked, WORDING)
        assert "IMPRESSION:" in report
        assert [n for n, x in zip(names, findings_vector(report, names), strict=True) if x] == sorted(ticked, key=names.index)


def test_multi_prompt_draws_report_other_view_both_or_nothing():
    """A patient with both views is made from its report, its other view or both; a film alone from its
    report; now and then from nothing (for guidance)."""
    n = 4
    data = FilmSet(films=torch.zeros(n, 1, 8, 8, dtype=torch.uint8), view=torch.tensor([0, 1, 0, 0]),
                   report=torch.zeros(n, 384), findings=torch.zeros(n, 16), partner=[1, 0, -1, -1],
                   held_out=np.zeros(n, bool), groups=["a", "a", "b", "c"], reports=[""] * n)
    latents = torch.randn(n, 4, 2, 2)
    seen: dict[int, set] = {i: set() for i in range(n)}
    rng = random.Random(0)
    for _ in range(300):
        c = multi_prompt(data, list(range(n)), latents, rng)
        for i in range(n):
            seen[i].add((bool(c.has_report[i]), bool(c.has_other[i])))
        assert torch.equal(c.other[0], latents[1]) and torch.equal(c.other[1], latents[0])
    assert seen[0] == seen[1] == {(True, False), (False, True), (True, True), (False, False)}
    assert seen[2] == seen[3] == {(True, False), (False, False)}


# ---- the shipped generator --------------------------------------------------------------------------
def test_the_same_inputs_and_seed_give_the_same_films(maker):
    normal = maker.make([FRONTAL], findings=["No Finding"], seed=3, steps=4)
    assert normal.findings == [] and "IMPRESSION" in normal.report  # the site's normal report
    a = maker.make([FRONTAL, LATERAL], findings=["Cardiomegaly"], seed=3, steps=4)
    b = maker.make([FRONTAL, LATERAL], findings=["Cardiomegaly"], seed=3, steps=4)
    c = maker.make([FRONTAL, LATERAL], findings=["Cardiomegaly"], seed=4, steps=4)
    size = maker.model.config.size
    assert set(a.films) == {FRONTAL, LATERAL} and a.films[FRONTAL].shape == (size, size)
    assert all(np.array_equal(a.films[v], b.films[v]) for v in a.films)
    assert not np.array_equal(a.films[FRONTAL], c.films[FRONTAL])
    assert a.provenance["seed"] == 3 and a.provenance["given"] == ["report"] and a.findings == ["Cardiomegaly"]
    assert a.films[FRONTAL].std() > 5  # a picture, not a flat grey


def test_a_lateral_from_a_report_is_made_through_its_frontal(maker):
    """The denoiser draws a report's lateral as a frontal (it saw 20 laterals among 805 films), so the
    lateral is made from the frontal made from the report: the two views of one request are one
    patient's, and the lateral is the same whether or not the frontal is asked for too."""
    both = maker.make([FRONTAL, LATERAL], findings=["Pleural Effusion"], seed=5, steps=3)
    alone = maker.make([LATERAL], findings=["Pleural Effusion"], seed=5, steps=3)
    frontal = maker.make([FRONTAL], findings=["Pleural Effusion"], seed=5, steps=3)
    assert list(alone.films) == [LATERAL] and np.array_equal(both.films[LATERAL], alone.films[LATERAL])
    assert np.array_equal(both.films[FRONTAL], frontal.films[FRONTAL])
    cond = maker.condition([LATERAL], both.report, {})
    frontals, laterals = through_frontal(maker.model, cond, torch.Generator().manual_seed(5), steps=3, guide=maker.guide)
    assert np.array_equal(np.round(laterals[0, 0].numpy() * 255).astype(np.uint8), alone.films[LATERAL])
    direct = maker.model.sample(cond, torch.Generator().manual_seed(5), steps=3, guide=maker.guide)
    assert not torch.equal(direct, laterals)  # not the report's own lateral


def test_the_shipped_generator_listens_to_the_report(maker):
    """The first shipped denoiser (films 0.1.0) predicted the same noise with a patient's report, another
    patient's or none (mean difference 3e-4 at step 300): the report was one cross-attention token among
    67. It now also shifts every block, as a class label would."""
    model = maker.model
    cond = maker.condition([FRONTAL] * 4, report_for(["Cardiomegaly", "Pleural Effusion"], WORDING), {})
    t = torch.full((4,), 300)
    noise = torch.randn(4, *model.mean_latent.shape[1:], generator=torch.Generator().manual_seed(0))
    x = model.noise_scheduler().add_noise(model.mean_latent[cond.view], noise, t)
    with torch.no_grad():
        difference = (model(x, t, cond) - model(x, t, cond.without_inputs())).abs().mean()
    assert difference > 3e-3  # 8e-3 for films 0.2.0, 1.1e-2 for 0.3.0


def test_one_view_makes_the_other_and_bad_requests_say_why(maker, nih_pixels):
    made = maker.make([LATERAL], frontal=nih_pixels, seed=0, steps=3)
    assert set(made.films) == {LATERAL} and made.given == ["frontal"] and made.report == ""
    both = maker.make([LATERAL], report="Mild cardiomegaly.", frontal=nih_pixels, seed=0, steps=3)
    assert both.given == ["report", "frontal"]
    for kwargs, message in (({"views": [FRONTAL]}, "give a report, findings or a film"),
                            ({"views": [FRONTAL], "frontal": nih_pixels}, "the frontal film is given"),
                            ({"views": []}, "choose the view"),
                            ({"views": ["oblique"], "findings": ["Cardiomegaly"]}, "unknown view"),
                            ({"views": [FRONTAL], "findings": ["Broken heart"]}, "unknown finding"),
                            ({"views": [FRONTAL], "findings": ["No Finding", "Cardiomegaly"]}, "cannot both")):
        with pytest.raises(GenerationError, match=message):
            maker.make(**kwargs, steps=2)


def test_the_shipped_generator_has_its_card_and_provenance():
    folder = ASSETS / "film_generator"
    config = json.loads((folder / "config.json").read_text())
    assert config["latent_scale"] != 1.0  # set from the trained autoencoder's latents
    assert 0 < config["start_step"] < 1000  # chosen on the validation films (xr.train.films.choose_start)
    model = FilmGenerator.from_pretrained(folder)
    assert model.mean_latent.abs().sum() > 0  # each view's mean training latent, where sampling starts
    card = (folder / "README.md").read_text()
    for needed in ("held-out", "pairs", "minutes", "eval-generation", "synthetic"):
        assert needed in card, needed
    manifest = json.loads((ASSETS / "MANIFEST.json").read_text())
    assert any(k.startswith("film_generator/model.safetensors") for k in json.dumps(manifest).split('"'))


# ---- data, training, evaluation on tiny real data ----------------------------------------------------
def tiny_views(tmp_path, patients: int = 8):
    """A covid_cxr_views-layout folder with the first patients' films."""
    with open(VIEWS_DIR / "views.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = sorted({r["patient"] for r in rows})[:patients]
    out = tmp_path / "views"
    (out / "images").mkdir(parents=True)
    rows = [r for r in rows if r["patient"] in keep]
    for r in rows:
        shutil.copy(VIEWS_DIR / "images" / r["image"], out / "images" / r["image"])
    with open(out / "views.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


def test_films_keep_a_patient_on_one_side_and_pair_its_views(shared):
    films = load_films(nih=NIH_DIR, views=VIEWS_DIR)
    by_group: dict[str, set] = {}
    for f in films:
        by_group.setdefault(f.group, set()).add(f.held_out)
    assert all(len(sides) == 1 for sides in by_group.values())
    assert 0.2 < np.mean([f.held_out for f in films]) < 0.4
    ps = pairs(films)
    assert len(ps) == 20 and all(a.view == FRONTAL and b.view == LATERAL and a.group == b.group for a, b in ps)


def test_the_perceptual_term_counts_lost_detail_above_a_shift_in_brightness(nih_pixels):
    """Why the autoencoder has it: a film blurred by 2 px and the same film 0.06 brighter are about equally
    far from it in L1, and only the blur loses what a reader needs."""
    x = torch.from_numpy(to_film(nih_pixels, 128))[None] * 2 - 1
    blurred = torch.as_tensor(GaussianSmooth(sigma=2.0)(x[0]))[None]
    brighter = (x + 0.06).clamp(-1, 1)
    perceptual = ChestPerceptual()
    with torch.no_grad():
        assert (blurred - x).abs().mean() > 0.5 * (brighter - x).abs().mean()
        assert float(perceptual(x, blurred)) > 2 * float(perceptual(x, brighter))


def test_train_films_writes_a_model_that_loads_and_samples(shared, tmp_path):
    films = load_films(nih=NIH_DIR, views=tiny_views(tmp_path))
    films = [f for f in films if f.source != "nih"] + [f for f in films if f.source == "nih"][:24]
    model = train_films(films, tmp_path / "m", WORDING, ae_minutes=0.05, minutes=0.05, guide_minutes=0.01, ae_epochs=1,
                        epochs=1, config=TINY, guide_scales=(0.0, 4.0), steps=2, log=lambda m: None)
    history = json.loads((tmp_path / "m" / "history.json").read_text())
    assert [h["stage"] for h in history["epochs"]] == ["autoencoder", "denoiser"]
    parts = history["films"]  # by the patient's hash: held out below 0.3, validation up to 0.4
    assert parts["held_out"] == sum(is_validation(f.group, 0.3) for f in films)
    assert parts["validation"] == sum(is_validation(f.group, 0.4) and not is_validation(f.group, 0.3) for f in films)
    assert parts["train"] == sum(not is_validation(f.group, 0.4) for f in films)
    assert (tmp_path / "m" / "training_curve.png").stat().st_size > 1000
    loaded = FilmGenerator.from_pretrained(tmp_path / "m")
    assert loaded.config.latent_scale == pytest.approx(model.config.latent_scale, rel=1e-6)
    assert loaded.config.start_step in range(100, 1000, 100) and loaded.mean_latent.abs().sum() > 0
    made = FilmMaker(loaded, WORDING).make([FRONTAL], findings=["Pneumonia"], steps=2)
    assert made.films[FRONTAL].shape == (32, 32)
    guide = json.loads((tmp_path / "m" / "guide" / "history.json").read_text())
    assert [h["stage"] for h in guide["epochs"]] == ["guide"] and sum(h.get("kept", False) for h in guide["epochs"]) == 1
    assert [c["scale"] for c in guide["scale_choice"]] == [0.0, 4.0]
    maker = FilmMaker.from_pretrained(tmp_path / "m", ASSETS / "dffg")
    assert maker.guide is not None and maker.guide.config.scale in (0.0, 4.0)
    assert maker.make([FRONTAL], findings=["Pneumonia"], steps=2).provenance["finding_guide"] == maker.guide.config.scale
    # the guide alone is retrained on the generator there, which stays as it was
    before = (tmp_path / "m" / "model.safetensors").read_bytes()
    train_films(films, tmp_path / "m", WORDING, guide_minutes=0.01, epochs=1, guide_only=True, guide_scales=(4.0,),
                steps=2, log=lambda m: None)
    assert (tmp_path / "m" / "model.safetensors").read_bytes() == before
    assert FilmMaker.from_pretrained(tmp_path / "m", ASSETS / "dffg").guide.config.scale == 4.0
    # the decoder alone goes on: the encoder, and so every latent the denoiser and guide learnt, unchanged
    guide_before = (tmp_path / "m" / "guide" / "model.safetensors").read_bytes()
    train_films(films, tmp_path / "m", WORDING, ae_minutes=0.01, ae_epochs=1, decoder_only=True, log=lambda m: None)
    after = FilmGenerator.from_pretrained(tmp_path / "m")
    for name, was in loaded.autoencoder.state_dict().items():
        same = torch.equal(was, after.autoencoder.state_dict()[name])
        assert same != (name.startswith(("decoder.", "post_quant_conv."))), name
    assert torch.equal(loaded.unet.state_dict()["out.2.conv.weight"], after.unet.state_dict()["out.2.conv.weight"])
    assert (tmp_path / "m" / "guide" / "model.safetensors").read_bytes() == guide_before
    stages = [h["stage"] for h in json.loads((tmp_path / "m" / "history.json").read_text())["epochs"]]
    assert stages == ["autoencoder", "denoiser", "decoder"]


def test_the_finding_guide_pushes_sampling_towards_the_asked_findings():
    """Its gradient raises the asked finding's logit and lowers the others' (the sign sampling relies on),
    and it moves only the films made from a report."""
    torch.manual_seed(0)
    guide = FindingGuide(FindingGuideConfig(latent_size=TINY.latent_size, channels=[16, 16], findings=TINY.findings)).eval()
    x, t, view = torch.randn(2, 4, TINY.latent_size, TINY.latent_size), torch.tensor([50, 300]), torch.tensor([0, 1])
    asked = torch.zeros(2, len(TINY.findings))
    asked[:, TINY.findings.index("Cardiomegaly")] = 1
    with torch.no_grad():
        before = guide(x, t, view)
        after = guide(x + 0.05 * guide.gradient(x, t, view, asked), t, view)
    j = TINY.findings.index("Cardiomegaly")
    assert (after[:, j] > before[:, j]).all() and (after[:, j + 1] < before[:, j + 1]).all()
    model = FilmGenerator(TINY).eval()
    model.config.start_step = 500
    s = TINY.latent_size
    cond = Condition(torch.tensor([0, 1]), torch.randn(2, TINY.text_dim), asked, torch.zeros(2, 4, s, s),
                     torch.tensor([True, False]), torch.tensor([False, False]))
    plain = model.sample(cond, torch.Generator().manual_seed(1), steps=3)
    guide.config.scale = 50.0
    guided = model.sample(cond, torch.Generator().manual_seed(1), steps=3, guide=guide)
    assert not torch.equal(plain[0], guided[0]) and torch.equal(plain[1], guided[1])


def test_balanced_draws_favour_films_with_rare_findings():
    findings = torch.zeros(7, len(TINY.findings))
    findings[0, 0] = 1  # one film with a rare finding
    findings[1:3, 1] = 1  # two with a commoner one; film 2 also has a finding no other film has
    findings[2, 2] = 1
    data = FilmSet(torch.zeros(7, 1, 4, 4, dtype=torch.uint8), torch.zeros(7, dtype=torch.long), torch.zeros(7, 384),
                   findings, [-1] * 7, np.zeros(7, bool), [str(i) for i in range(7)], [""] * 7)
    w = balanced_draws(data, list(range(7)))
    assert w[0] == 1.0 and w[1] == pytest.approx(2 ** -0.5) and w[2] == 1.0  # film 2: its rarer finding counts
    assert w[3:] == [pytest.approx(4 ** -0.5)] * 4  # four normal films


def test_a_stage_keeps_its_best_validation_epoch():
    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scripted, seen = iter([3.0, 1.0, 2.0]), []

    def check():
        seen.append(net.weight.detach().clone())
        return "validation_loss", next(scripted)
    history = run_stage("test", net, opt, accelerator(), [0, 1], [1.0, 1.0], 1, 60, 3, random.Random(0),
                        lambda idx: net(torch.ones(len(idx), 2)).sum(), check, lambda m: None, keep_best=True)
    assert torch.equal(net.weight, seen[1]) and [h.get("kept", False) for h in history] == [False, True, False]


def test_eval_generation_prints_its_table_on_a_small_folder(shared, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(ASSETS / "film_generator", model)
    r = run(["eval-generation", "--views", str(tiny_views(tmp_path, 20)), "--steps", "2", "--per-finding", "2", "--json",
             "--dir", str(model), "--write"], tmp_path / "data", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    for figure in ("laterals.png", "findings.png"):  # for the card: generated laterals beside real ones
        assert Image.open(model / figure).size[0] > 400
    assert json.loads((model / "EVAL.json").read_text())["size"] == json.loads((model / "config.json").read_text())["size"]
    out = json.loads(r.stdout)
    n = out["films"]["held_out_frontal"]
    assert n >= 2 and out["decoding"]["steps"] == 2
    spaces = out["distribution"]
    assert len(spaces) == 2 and all(set(s) == {"generated", "real (training films)", "blurred real",
                                                                "held-out films through the autoencoder"} for s in spaces.values())
    assert all(np.isfinite(v["fd"]) and v["fd_interval"][0] <= v["fd_interval"][1] for s in spaces.values() for v in s.values())
    assert 0 <= out["precision_recall"]["precision"] <= 1
    assert "frontal -> lateral" in out["view_pairs"] and out["finding_consistency"]
    lat = out["laterals_read_as_lateral"]
    assert set(lat) == {"report", "frontal"} and all(v["films"] == n and 0 <= v["lateral"] <= n for v in lat.values())
    assert all({"auc", "interval", "with", "normal"} <= set(c["real"]) for c in out["finding_consistency"].values())
    # in two sittings: the frontal side, then the laterals into the same evaluation, the frontals' figures kept
    frontals = ["eval-generation", "--views", str(tmp_path / "views"), "--steps", "2", "--per-finding", "2", "--json",
                "--dir", str(model), "--write", "--frontals"]
    r = run(frontals, tmp_path / "data", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    first = json.loads((model / "EVAL.json").read_text())
    assert first["distribution"] == out["distribution"] and "laterals_read_as_lateral" not in first
    assert "Laterals: not measured yet" in (model / "EVAL.md").read_text()
    laterals = [*frontals[:5], "--json", "--dir", str(model), "--write", "--laterals"]
    r = run(laterals, tmp_path / "data", timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    again = json.loads((model / "EVAL.json").read_text())
    assert again["distribution"] == out["distribution"] and again["laterals_measured"]
    assert again["laterals_read_as_lateral"] == out["laterals_read_as_lateral"]
    assert set(again["laterals_read_as_lateral"]) == {"report", "frontal"} and "(measured " in (model / "EVAL.md").read_text()
    r = run([*laterals[:4], "3", *laterals[5:]], tmp_path / "data")  # other decoding: its frontals were not measured
    assert r.returncode == 2 and "run eval-generation without it first" in r.stderr
    (model / "EVAL.json").write_text(json.dumps({**again, "weights": "other weights"}))  # e.g. a decoder trained on since
    r = run(laterals, tmp_path / "data")
    assert r.returncode == 2 and "run eval-generation without it first" in r.stderr
    r = run(["eval-generation", "--views", str(tmp_path / "nowhere")], tmp_path / "data")
    assert r.returncode == 2 and r.stderr.startswith("error:")


def test_generate_cli_writes_marked_pngs_from_findings_or_a_view(tmp_path, nih_pixels):
    r = run(["generate", "--findings", "Cardiomegaly", "--out", str(tmp_path / "a"), "--seed", "5", "--steps", "3"],
            tmp_path / "data")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out["films"]) == {"frontal", "lateral"} and out["seed"] == 5
    for path in out["films"].values():
        meta = provenance_of(open(path, "rb").read())
        assert meta["synthetic"] and meta["seed"] == 5 and meta["findings"] == ["Cardiomegaly"]
    Image.fromarray(nih_pixels).save(tmp_path / "f.png")
    r = run(["generate", "--frontal", str(tmp_path / "f.png"), "--out", str(tmp_path / "b"), "--steps", "3"], tmp_path / "data")
    assert r.returncode == 0, r.stderr
    assert list(json.loads(r.stdout)["films"]) == ["lateral"]
    r = run(["generate", "--findings", "Broken heart", "--out", str(tmp_path / "c")], tmp_path / "data")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "unknown finding" in r.stderr


def test_a_synthetic_film_is_never_stored_as_a_patients_study(env, workstation_factory, tmp_path, nih_pixels):
    from xr import store

    ws = workstation_factory(env)
    path = tmp_path / "synthetic_frontal.png"
    path.write_bytes(png_bytes(np.asarray(Image.fromarray(nih_pixels).resize((128, 128))), {"model": "x", "seed": 0}))
    with pytest.raises(store.StoreError, match="synthetic film"):
        ws.draft([path], "cough")  # drafting for the worklist stores the study: refused
    with pytest.raises(store.StoreError, match="synthetic film"):
        ws.add_study([path], "cough", ws.actor(None, "draft"))
    assert store.worklist(env, "", "") == []
    report = ws.draft([path], "", actor=None).draft.report  # read and drafted, never stored, and it says so first
    assert report.splitlines()[0].startswith("FINDINGS: SYNTHETIC FILM, made by the film generator: not a patient's image.")


def test_study_views_come_from_the_layouts_header_sheet_else_the_pixels(shared):
    from xr.data.films import study_films

    films = {f.path.name: f.view for f in study_films(SHARED / "data" / "iu_xray")}
    assert films["CXR20_IM-0653-1002.png"] == LATERAL and films["CXR103_IM-0023-1001.png"] == FRONTAL
    assert films["CXR14_IM-0256-2001.png"] is None  # not in the sheet: told from the pixels when trained on


def test_bench_generation_prints_its_figures():
    from xr.bench.generation import bench_generation, format_generation

    r = bench_generation(repeats=1, steps=2)
    text = format_generation(r)
    assert "| report -> frontal + lateral |" in text and "| frontal -> lateral |" in text and r["machine"] in text
    assert all(x["p50_ms"] > 0 for x in r["results"].values())
