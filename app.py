"""The workstation (Gradio Blocks): a workspace per role (reporting for radiologists, teaching for
educators, corrections for annotators), log-in when the app listens beyond this machine, and the scripting
API for gradio_client (README, "From a script"). Every handler asks xr.access first."""
from __future__ import annotations

import html
import logging
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a clinical tool phones nobody

import gradio as gr  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from db.session import engine_for  # noqa: E402
from xr import access  # noqa: E402
from xr.config import Settings, settings  # noqa: E402
from xr.encode.eyes import eye_for, site_status  # noqa: E402
from xr.errors import UserError  # noqa: E402
from xr.sessions import DatabaseSessions, EndOnLogout, cookie_name  # noqa: E402
from xr.ui.api import Api  # noqa: E402
from xr.ui.common import page_head, username  # noqa: E402
from xr.ui.corrections import Corrections  # noqa: E402
from xr.ui.generation import Generation  # noqa: E402
from xr.ui.network import HostAndOrigin, SameAccount  # noqa: E402
from xr.ui.owners import Owners  # noqa: E402
from xr.ui.reporting import Reporting, worklist_rows  # noqa: E402
from xr.ui.teaching import Teaching  # noqa: E402
from xr.ui.tempfiles import OneTimeExports, private_folder, use_private_folder  # noqa: E402
from xr.ui.throttle import AddressBackoff, login_checker  # noqa: E402
from xr.ui.uploads import UploadLimit  # noqa: E402
from xr.views import VIEWS  # noqa: E402
from xr.watcher import Watcher  # noqa: E402
from xr.workstation import Workstation  # noqa: E402

log = logging.getLogger("xr.app")
DISCLAIMER = "**Research use only, not a medical device.** Drafts must be read and corrected by a radiologist."
# The log-in page shows this as HTML (Markdown would show its backticks).
LOGIN_MESSAGE = ("<b>XR — chest X-ray report drafting</b><br><b>Research use only, not a medical device.</b> Drafts "
                 "must be read and corrected by a radiologist.<br>Log in with the account your administrator made "
                 "(<code>python -m xr user add</code>).")
WORKSPACES = {"reporting": "worklist", "teaching": "teach", "corrections": "correct", "generate": "generate"}  # tab -> right
CSS = """
.xr-viewer img { cursor: crosshair; touch-action: none; user-select: none; -webkit-user-drag: none; }
.xr-viewer, .xr-viewer :fullscreen, .xr-viewer:fullscreen { background: #000 !important; }
.xr-hidden { display: none !important; }
#finding-panel { max-height: max(160px, calc(100vh - 720px)); overflow-y: auto; }
#finding-panel table { font-size: 12px; line-height: 1.25; }
#finding-panel th, #finding-panel td { padding: 2px 6px !important; }
#finding-panel td:nth-child(2) { white-space: nowrap; }
"""


def build_app(ws: Workstation | None = None, watcher: Watcher | None = None) -> gr.Blocks:
    """`watcher`: the PACS watcher the app runs (XR_PACS_URL), whose last round the Reporting workspace shows."""
    ws = ws or Workstation()
    s = ws.settings
    use_private_folder(s)  # before the Blocks, which read it (xr/ui/tempfiles.py)
    # Files Gradio made for this app (uploads a failed action left, exports handed out) go after an hour.
    with gr.Blocks(title="XR drafting workstation", delete_cache=(3600, 3600)) as demo:
        with gr.Row():
            gr.Markdown("# Chest X-ray report drafting\n" + DISCLAIMER)
            who = gr.Markdown(elem_id="who")
            gr.Button("Log out", link="/logout", size="sm", visible=s.auth, scale=0)
        with gr.Tabs() as tabs:
            reporting = Reporting(ws, watcher)
            generation = Generation(ws)
            workspaces: dict[str, Reporting | Corrections | Teaching | Generation] = {
                "reporting": reporting, "corrections": Corrections(ws), "teaching": Teaching(ws), "generate": generation}

        def enter(request: gr.Request):
            """Show each user only the workspaces their role has (the handlers check again)."""
            name = username(request)
            try:
                user, role = access.whoami(s, name)
            except access.AccessError:
                return (gr.update(), *[gr.update(visible=False)] * len(workspaces), gr.update(), [])
            shown = [tab for tab, right in WORKSPACES.items() if access.allowed(role, right)]
            mode = "single-user mode (no log-in)" if name is None else f"signed in as <b>{html.escape(user)}</b> ({role})"
            if role == access.Role.ADMIN:
                mode += "<br>" + html.escape(eye_line(ws))
            rows = worklist_rows(ws.desk(name), "all", "") if "reporting" in shown else []
            return (f"<div style='text-align:right'>{mode}</div>",
                    *[gr.update(visible=tab in shown) for tab in workspaces],
                    gr.Tabs(selected=shown[0] if shown else None),
                    rows)

        demo.load(enter, None, [who, *[w.tab for w in workspaces.values()], tabs, reporting.table],
                  api_visibility="private")
        Api(ws).register(reporting, generation)
    demo.queue(default_concurrency_limit=s.concurrency, max_size=s.queue_size)  # bounded: a full queue says so
    return demo


def eye_line(ws: Workstation) -> str:
    """What an admin reads of the eye: the one drafts use now, and what `xr learn` last promoted, with its
    before/after figures (used from the app's next start, if that is not the same eye)."""
    line = f"eye: {ws.drafter.eye.name}"
    st = site_status(ws.settings)
    if st["eye"] is None:
        return line + " (python -m xr learn refits it on the signed studies)"
    if st["after"] is None or st["before"] is None:
        return line + f"; {st['eye']} promoted"
    learnt = (f"{st['eye']}: macro AUC {st['after']:.3f} against {st['before']:.3f} before, on "
              f"{st['site_validation_films']} validation films of signed studies")
    return line + ("; " + learnt if f" {st['eye']} " in line else f"; promoted since the app started, used from its next start: {learnt}")


def main() -> None:
    """Start as a user runs it: a console line per start-up step, the models warmed up by one draft of two
    shipped radiographs (so the first user's draft is as fast as later ones), then `ready at URL`."""
    import time

    _console()
    s = _checked_settings()
    started = time.perf_counter()

    def step(n: int, what: str, do) -> None:
        t = time.perf_counter()
        log.info("start-up %d/4: %s", n, what)
        do()
        log.info("start-up %d/4: done in %.1f s", n, time.perf_counter() - t)

    ws = Workstation(s)
    step(1, "loading the drafter (report generator, case library) and the approved studies",
         lambda: ws.index.sync(s))  # (the index comes with the drafter)
    step(2, "loading the text encoder", lambda: ws.index.embed_text([""]))
    step(3, "warm-up draft of two shipped radiographs (image encoders, finding head, generator)", lambda: _warm_up(ws))
    watcher = Watcher(ws).start() if s.pacs_url else None  # drafts the PACS's new studies ahead
    demo = build_app(ws, watcher)
    step(4, "starting the web server", lambda: launch(demo, s, server_name=s.host, server_port=s.port,
                                                       prevent_thread_lock=True, quiet=True))
    host = f"[{s.host}]" if ":" in s.host else s.host
    log.info("started in %.1f s", time.perf_counter() - started)
    print(f"ready at http://{host}:{s.port}/", flush=True)
    demo.block_thread()


def _console() -> None:
    """One line per start-up step and warning; no progress bars from the libraries."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests, a line each
    try:
        import transformers.utils.logging

        transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars: the step lines say it
    except ImportError:
        pass


def _checked_settings() -> Settings:
    """The settings, the database created or migrated, and every way they could go wrong said now, in one
    line each, before any model loads."""
    try:
        s = settings()
    except ValueError as e:  # a setting the exports could not hold, say: one line, before anything loads
        sys.exit(f"error: {e}")
    if "XR_ORGANIZATION" in s.unset:
        log.warning("XR_ORGANIZATION is not set: exported reports name the site '%s'", s.organization)
    if not s.auth and "XR_LOCAL_USER" in s.unset:
        log.warning("XR_LOCAL_USER is not set: reports approved here are signed '%s'", s.local_user)
    try:
        eye_for(s)  # XR_EYE names an eye that loads: said now, not on every draft
    except UserError as e:
        sys.exit(f"error: {e}")
    engine_for(s.database_url)  # create or migrate the database now: a bad URL fails here, not on a click
    if s.auth and not access.has_users(s):
        sys.exit("error: log-in is on (XR_AUTH, or listening beyond localhost) and there are no users yet: "
                 "create one with `python -m xr user add NAME --role admin`")
    if not s.allowed_hosts:
        log.warning("listening on %s with no XR_ALLOWED_HOSTS: any Host header is answered (set the names "
                    "users reach the app by, e.g. XR_ALLOWED_HOSTS=xr.hospital.example)", s.host)
    if not s.auth and s.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("single-user mode (XR_AUTH=off) while listening on %s: anyone who can reach it is admin", s.host)
    log.info("data directory %s; listening on %s:%d; log-in %s", s.data_dir, s.host, s.port, "on" if s.auth else "off")
    return s


def _warm_up(ws: Workstation) -> None:
    """Image encoders, finding head and ONNX sessions load on the first draft with images, and the first
    passes through them are slower still: one draft of a shipped frontal and lateral view (not stored) does
    all that here, not on the first user's click."""
    import json

    from xr.config import ASSETS

    views = {v["view"]: v["thumb"] for v in reversed(json.loads((ASSETS / "case_library" / "images.json").read_text()))}
    try:
        ws.draft([ASSETS / "case_library" / "thumbs" / views[v] for v in VIEWS if v in views], "cough", actor=None)
    except Exception as e:  # the app still serves; the first user's draft will say what is wrong
        log.warning("warm-up draft failed, drafts may fail the same way: %s", e)


def launch(demo: gr.Blocks, s: Settings, **kwargs):
    """Start serving, with log-in when the settings ask for it (the tests start the app this way too).
    Log-in sessions live in the database (xr/sessions.py) under a cookie name every process of this
    installation shares, so processes behind one load balancer know each other's log-ins."""
    kwargs.setdefault("max_file_size", s.max_archive_bytes)  # refused before it is written to disk
    # Host and Origin, then the log-in backoff, are checked before Gradio sees a request (xr/ui/network.py,
    # xr/ui/throttle.py)
    # then uploads against the limits, then whose page session or file a request names (xr/ui/uploads.py,
    # xr/ui/owners.py); a downloaded export is deleted (xr/ui/tempfiles.py)
    sessions = DatabaseSessions(s)
    middleware = [] if s.auth else [Middleware(SameAccount)]  # single-user mode: this account only
    middleware += [Middleware(HostAndOrigin, allowed_hosts=s.allowed_hosts), Middleware(AddressBackoff),
                  Middleware(EndOnLogout, sessions=sessions), Middleware(UploadLimit, s=s, sessions=sessions),
                  Middleware(Owners, sessions=sessions, folder=private_folder(s)),
                  Middleware(OneTimeExports, folder=private_folder(s))]
    app_kwargs = kwargs.pop("app_kwargs", {})
    app_kwargs["middleware"] = middleware + list(app_kwargs.get("middleware", []))
    # Gradio's run history keeps inputs and outputs in the browser and serves routes without log-in: off.
    auth = login_checker(lambda name, password: access.login(s, name, password)) if s.auth else None
    result = demo.launch(css=CSS, head=page_head(), run_history=False, auth=auth, prevent_thread_lock=True,
                         auth_message=LOGIN_MESSAGE,
                         app_kwargs=app_kwargs, **{k: v for k, v in kwargs.items() if k != "prevent_thread_lock"})
    app = demo.server_app
    outermost(app, {HostAndOrigin, SameAccount})
    app.tokens = sessions  # type: ignore[assignment]  # Gradio only gets, sets, tests and deletes
    app.cookie_id = cookie_name(s)
    return result


def outermost(app, classes: set[type]) -> None:
    """Put the network checks outside every middleware Gradio adds itself: its CORS middleware is added
    after ours and so wraps them, and would answer a foreign page's preflight (OPTIONS) before the Host
    and Origin rules ran. The stack is rebuilt at the next request."""
    ours = [m for m in app.user_middleware if m.cls in classes]
    app.user_middleware = ours + [m for m in app.user_middleware if m.cls not in classes]
    app.middleware_stack = None


if __name__ == "__main__":
    main()
