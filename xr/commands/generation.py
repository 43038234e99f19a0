"""`python -m xr train-films`, `eval-generation` and `generate`: the second system from a terminal."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xr.commands.common import main_process
from xr.errors import UserError
from xr.views import FRONTAL, LATERAL, VIEWS

SHIPPED = "film_generator"


def _films(args: argparse.Namespace):
    from xr.data.films import load_films

    if not (args.nih or args.views or args.studies):
        raise UserError("give at least one of --nih, --views, --studies")
    films = [f for n in args.nih or [] for f in load_films(nih=n)] + load_films(views=args.views, studies=args.studies)
    if not films:
        raise UserError("no films found in the folders given")
    return films


def _model_dir(args: argparse.Namespace) -> Path:
    from xr.config import ASSETS

    return Path(args.dir) if args.dir else ASSETS / SHIPPED


def _guidance(args: argparse.Namespace) -> float:
    from xr.generate.model import GUIDANCE

    return GUIDANCE if args.guidance is None else args.guidance


def cmd_train_films(args: argparse.Namespace) -> int:
    import torch

    from xr.config import ASSETS
    from xr.decode.wording import Wording
    from xr.train.films import train_films

    main, log = main_process()
    torch.set_num_threads(args.threads)
    train_films(_films(args), _model_dir(args), Wording.load(ASSETS / "dffg"), ae_minutes=args.ae_minutes,
                minutes=args.minutes, guide_minutes=args.guide_minutes, ae_epochs=args.ae_epochs, epochs=args.epochs,
                batch=args.batch, seed=args.seed, guide_only=args.guide_only,
                decoder_only=args.decoder_only, log=log)
    return 0


def _weights(directory: Path) -> str:
    """The generator's and its finding guide's weights, as an evaluation records them: --laterals adds to
    an evaluation only of these same weights (a decoder trained on keeps the version string)."""
    from xr.assets import digest
    from xr.generate.model import GUIDE_DIR

    return "+".join(digest(p)[:16] for p in (directory / "model.safetensors", directory / GUIDE_DIR / "model.safetensors")
                    if p.is_file())


def cmd_eval_generation(args: argparse.Namespace) -> int:
    import datetime

    import torch

    from xr.config import ASSETS
    from xr.decode.wording import Wording
    from xr.generate.anytoany import load_guide
    from xr.generate.evaluation import evaluate_generation, evaluate_laterals, format_markdown
    from xr.generate.filmset import prepare
    from xr.generate.model import FilmGenerator

    torch.set_num_threads(args.threads)
    _, log = main_process()
    directory = _model_dir(args)
    model = FilmGenerator.from_pretrained(directory)
    guide, earlier = load_guide(directory), directory / "EVAL.json"
    if args.laterals:  # the frontals' figures are kept: only where the same weights and decoding would make them again
        kept = json.loads(earlier.read_text()) if earlier.is_file() else {}
        d = kept.get("decoding", {})
        if ((kept.get("model"), kept.get("weights"), d.get("guide_scale"), d.get("steps"), d.get("guidance"), d.get("seed"))
                != (model.config.version, _weights(directory), guide.config.scale if guide else 0.0, args.steps,
                    _guidance(args), args.seed)):
            raise UserError(f"--laterals measures the laterals into an evaluation of {model.config.version} with "
                            f"this finding guide and decoding: run eval-generation without it first, or with --frontals "
                            f"({earlier} has none)")
    wording = Wording.load(ASSETS / "dffg")
    data = prepare(_films(args), model.config, wording, log)
    figures = directory if args.write else None
    if args.laterals:
        result = {**kept, "laterals_measured": datetime.date.today().isoformat(),
                  **evaluate_laterals(model, data, seed=args.seed, steps=args.steps, guidance=_guidance(args), guide=guide,
                                      figures=figures)}
    else:
        result = evaluate_generation(model, data, wording, seed=args.seed, steps=args.steps, guidance=_guidance(args),
                                     guide=guide, per_finding=args.per_finding, figures=figures,
                                     laterals=not args.frontals, log=log) | {"weights": _weights(directory)}
    result["data"] = {k: " + ".join(Path(p).name for p in v) for k, v in (("nih", args.nih or []), ("views", [args.views]),
                                                                         ("studies", [args.studies])) if v and v[0]}
    if args.write:
        (directory / "EVAL.json").write_text(json.dumps(result, indent=1) + "\n")
        (directory / "EVAL.md").write_text(format_markdown(result))
    print(json.dumps(result) if args.json else format_markdown(result))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from xr.config import ASSETS
    from xr.generate.anytoany import FilmMaker
    from xr.generate.synthetic import png_bytes
    from xr.ingest import read_pixels

    maker = FilmMaker.from_pretrained(_model_dir(args), ASSETS / "dffg")
    given = {v: read_pixels(Path(p)) for v, p in zip(VIEWS, (args.frontal, args.lateral), strict=True) if p}
    views = args.view or [v for v in VIEWS if v not in given]
    if not views:
        raise UserError("both views are given: draft the report from them with `python -m xr draft`")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    last = [0]

    def progress(fraction: float) -> None:
        if int(fraction * 10) > last[0]:
            last[0] = int(fraction * 10)
            print(f"sampling {fraction:.0%}", file=sys.stderr)

    made = maker.make(views, report=args.report or "", findings=args.findings or [], frontal=given.get(FRONTAL),
                      lateral=given.get(LATERAL), seed=args.seed, steps=args.steps, guidance=_guidance(args),
                      progress=progress)
    written = {}
    for view, film in made.films.items():
        path = out / f"synthetic_{view}_seed{made.seed}.png"
        path.write_bytes(png_bytes(film, {**made.provenance, "view": view}))
        written[view] = str(path)
    print(json.dumps({"films": written, **made.provenance}, indent=1))
    return 0


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nih", action="append", help="NIH ChestX-ray14 layout folder (labels.csv + images/): frontal films with "
                                                  "labels; repeat for several (a patient in two is one patient)")
    p.add_argument("--views", help="covid_cxr_views layout folder (views.csv + images/): frontal/lateral pairs")
    p.add_argument("--studies", help="IU X-ray or MIMIC-CXR-JPG folder: studies with reports and both views")
    p.add_argument("--dir", default=None, help=f"model folder (default assets/{SHIPPED})")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)


def register(sub) -> None:
    t = sub.add_parser("train-films", help="train the film generator (autoencoder, then latent diffusion) on the "
                                           "films outside the held-out and validation patients")
    _data_args(t)
    t.add_argument("--ae-minutes", type=float, default=35.0, help="time budget of the autoencoder stage")
    t.add_argument("--minutes", type=float, default=25.0, help="time budget of the diffusion stage")
    t.add_argument("--guide-minutes", type=float, default=5.0, help="time budget of the finding guide's stage")
    t.add_argument("--guide-only", action="store_true",
                   help="keep the generator in --dir and train only its finding guide (and choose its scale)")
    t.add_argument("--decoder-only", action="store_true",
                   help="keep the generator in --dir and go on training only its autoencoder's decoder for "
                        "--ae-minutes (the latents, denoiser and finding guide stay as they are)")
    t.add_argument("--ae-epochs", type=int, default=200)
    t.add_argument("--epochs", type=int, default=1000)
    t.add_argument("--batch", type=int, default=16)
    t.set_defaults(fn=cmd_train_films)

    e = sub.add_parser("eval-generation", help="generated vs held-out real films: FD/KID, precision/recall, "
                                               "memorisation, finding consistency, frontal<->lateral")
    _data_args(e)
    e.add_argument("--steps", type=int, default=30)
    e.add_argument("--guidance", type=float, help="classifier-free guidance (default: xr.generate.model.GUIDANCE, 5)")
    e.add_argument("--per-finding", type=int, default=16, help="films generated for each finding and for the normal report")
    e.add_argument("--json", action="store_true")
    side = e.add_mutually_exclusive_group()
    side.add_argument("--frontals", action="store_true",
                      help="measure only the frontal side (distribution, memorisation, finding consistency); the "
                           "laterals, which take as long again, then with --laterals")
    side.add_argument("--laterals", action="store_true",
                      help="measure only the laterals (view rule, frontal <-> lateral) into the model's evaluation "
                           "(EVAL.json) of the same weights and decoding: after --frontals, or after a change to how "
                           "laterals are made (its frontals would come out the same)")
    e.add_argument("--write", action="store_true", help="also write EVAL.md / EVAL.json and the figures "
                                                         "laterals.png / findings.png beside the model")
    e.set_defaults(fn=cmd_eval_generation)

    g = sub.add_parser("generate", help="synthetic films from a report, findings or the other view (PNG, marked "
                                        "synthetic in pixels and metadata)")
    g.add_argument("--report", help="report text to generate from")
    g.add_argument("--findings", nargs="+", metavar="FINDING",
                   help="findings to show, e.g. Cardiomegaly 'Pleural Effusion' ('No Finding': a normal film)")
    g.add_argument("--frontal", help="a frontal film (PNG/JPEG/DICOM): generate the lateral")
    g.add_argument("--lateral", help="a lateral film: generate the frontal")
    g.add_argument("--view", nargs="+", choices=list(VIEWS), help="views to make (default: those not given)")
    g.add_argument("--out", required=True, help="folder for the PNGs")
    g.add_argument("--seed", type=int, default=0, help="the same inputs and seed give the same films")
    g.add_argument("--steps", type=int, default=30)
    g.add_argument("--guidance", type=float, help="classifier-free guidance (default: xr.generate.model.GUIDANCE, 5)")
    g.add_argument("--dir", default=None, help=f"model folder (default assets/{SHIPPED})")
    g.set_defaults(fn=cmd_generate)
