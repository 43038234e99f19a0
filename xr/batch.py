"""Batch drafting: every study of a folder or archive, one JSON line each in OUT.jsonl as it finishes,
so that a long batch can stop and resume, and one bad study never stops the others. The studies are
drafted here, in local worker processes or by Ray actors; only this process writes the file."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import time
import traceback
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xr.config import settings
from xr.errors import UserError
from xr.ingest.errors import IngestError
from xr.ingest.image import IngestedImage
from xr.ingest.sources import Folder
from xr.ingest.study import IngestedStudy, archive_entries, load_study
from xr.result import DraftResult

WORKER_DIED = "worker process died while drafting this study (killed, out of memory, or its models failed to load)"


class BatchError(UserError):
    """A batch we cannot start or go on with: the input, the output file, the Ray cluster."""


Write = Callable[[dict], None]  # appends one study's result to OUT.jsonl


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """Half the cores: each worker holds its own models (about 1.5 GB) and drafts fastest with two
    torch threads, so a 2-core machine drafts in one process, without a pool to start."""
    return max(1, cores() // 2)


@dataclass(frozen=True)
class BatchStudy:
    name: str  # path relative to IN_DIR: the only trace of where a study came from that is written
    base: Path  # the folder its files are named relative to
    files: tuple[Path, ...]  # what the ingest is given: a folder's images, or one zip or image
    indication: str = ""

    def pixels(self) -> list[tuple[np.ndarray, str, tuple[float, float] | None]]:
        """The study read here, as a worker on another machine gets it: each image's display pixels, view
        and pixel spacing. No file, DICOM header, file name or UID crosses Ray's (unauthenticated) wire."""
        return [(im.pixels, im.view, im.pixel_spacing_mm) for im in load_study(list(self.files)).images]


def find_studies(root: Path) -> list[BatchStudy]:
    """The studies of the folder source (xr.ingest.sources.Folder), each with the folder its files are named from."""
    return [BatchStudy(r.name, root / r.name if (root / r.name).is_dir() else root, r.files, r.indication)
            for r in Folder(root, settings()).studies()]


@contextmanager
def opened(in_path: Path) -> Iterator[Path]:
    """IN_DIR itself, or a .zip archive of studies extracted to a private temporary folder, removed after."""
    if in_path.is_dir():
        yield in_path
        return
    if not (in_path.is_file() and in_path.suffix.lower() == ".zip"):
        raise BatchError(f"{in_path.name}: not a folder or a .zip archive of studies")
    with tempfile.TemporaryDirectory(prefix="xr-batch-") as tmp:
        extract(in_path, Path(tmp))
        yield Path(tmp)


def extract(archive: Path, dest: Path) -> None:
    """The ingest's archive rules (xr.ingest.study.archive_entries: an entry outside the folder or a link
    refuses the archive, hidden and system files are left out), a file at most XR_MAX_FILE_MB (a nested
    study .zip at most a study's worth), and it must fit on the disk. zipfile never returns more bytes
    than an entry declares."""
    s = settings()
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                wanted = archive_entries(zf, archive.name)
            except IngestError as e:
                raise BatchError(str(e)) from None
            for parts, info in wanted:
                limit = s.max_archive_bytes if parts[-1].lower().endswith(".zip") else s.max_file_bytes
                if info.file_size > limit:
                    raise BatchError(f"{archive.name}: an entry of {info.file_size / 2**20:.1f} MB is over the "
                                     f"limit of {limit / 2**20:.0f} MB")
            need = sum(info.file_size for _, info in wanted)
            if need > shutil.disk_usage(dest).free:
                raise BatchError(f"{archive.name}: needs {need / 2**30:.1f} GB to extract, more than the "
                                 "temporary folder has free (set TMPDIR)")
            for parts, info in wanted:
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, RuntimeError):
        raise BatchError(f"{archive.name}: not a readable zip archive") from None


def read_results(out: Path) -> dict[str, str]:
    """Each study's latest status ("ok" or "error") in OUT.jsonl. A last line left unfinished by a crash
    is cut away, once every complete line has proved the file ours, so appending starts on a new line.
    (Not xr.jsonl: there one bad line refuses the file, while here the last one may be torn.)"""
    if not out.exists():
        return {}
    try:
        data = out.read_bytes()
    except OSError as e:
        raise BatchError(f"cannot read {out.name}: {e.strerror or e}") from None
    complete = data.rfind(b"\n") + 1
    statuses = {}
    lines = data[:complete].splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            item = None
        if not (isinstance(item, dict) and isinstance(item.get("study"), str) and item.get("status") in ("ok", "error")):
            raise BatchError(f"{out.name} line {n}: expected a batch result ({{\"study\", \"status\", ...}})")
        statuses[item["study"]] = item["status"]
    if complete < len(data):
        if not data[complete:].startswith(b'{"study": '):
            raise BatchError(f"{out.name} line {len(lines) + 1}: expected a batch result ({{\"study\", \"status\", ...}})")
        with open(out, "rb+") as f:
            f.truncate(complete)
    return statuses


def compact(draft: DraftResult) -> dict:
    """The draft as JSON without what only the viewer needs (lung masks, fusion grids, the similar
    cases' reports and thumbnails): a few kB a study instead of tens."""
    d = draft.to_json()
    del d["fusion_weights"]
    for view in d["views"]:
        del view["lung_mask"]
    d["similar_case_ids"] = [case["case_id"] for case in d.pop("similar_cases")]
    return d


def reason(e: BaseException, base: Path | None = None) -> str:
    """One line, type and message, without the folder a study was read from (only its name is written)."""
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    if base is not None:
        first = first.replace(f"{base}{os.sep}", "").replace(str(base), "")
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def failed(study: BatchStudy, why: str) -> dict:
    return {"study": study.name, "status": "error", "error": why}


class Drafter:
    """One Workstation, its models loaded once, in one worker: this process, a pool process or a Ray actor."""

    def __init__(self, threads: int) -> None:
        import torch

        from xr.workstation import Workstation

        self.workstation = Workstation()
        torch.set_num_threads(threads)  # after the Workstation, which sets its own default
        _ = self.workstation.drafter  # load the models now rather than inside the first study's time
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def draft(self, study: BatchStudy) -> dict:
        return self._record(study, lambda: self.workstation.draft(list(study.files), study.indication, actor=None))

    def draft_pixels(self, name: str, images: list[tuple[np.ndarray, str, tuple[float, float] | None]],
                     indication: str) -> dict:
        """A study sent as pixels (`BatchStudy.pixels`): a Ray actor on another node reads no file."""
        study = IngestedStudy(key="", images=[IngestedImage(pixels=p, source_format="png", view=v, pixel_spacing_mm=sp)
                                              for p, v, sp in images])
        return self._record(BatchStudy(name, Path(), ()), lambda: self.workstation.draft_ingested(study, indication))

    def _record(self, study: BatchStudy, draft) -> dict:
        t0 = time.perf_counter()
        try:
            record = {"study": study.name, "status": "ok", "draft": compact(draft().draft)}
        except Exception as e:
            if not isinstance(e, UserError):  # a bug, not bad input: its traceback goes to stderr only
                traceback.print_exc(file=sys.stderr)
            record = failed(study, reason(e, study.base))
        return record | {"worker": self.name, "elapsed_ms": round((time.perf_counter() - t0) * 1e3, 1)}


_drafter: Drafter | None = None


def process_drafter(threads: int) -> Drafter:
    """This process's one Drafter (a pool process's initializer makes it): models load once a process."""
    global _drafter
    if _drafter is None:
        _drafter = Drafter(threads)
    return _drafter


def _draft_in_pool(study: BatchStudy) -> dict:
    assert _drafter is not None
    return _drafter.draft(study)


def run_here(todo: list[BatchStudy], write: Write) -> str | None:
    drafter = process_drafter(cores())
    for study in todo:
        write(drafter.draft(study))
    return None


def run_pool(todo: list[BatchStudy], write: Write, workers: int) -> str | None:
    """Spawned processes (fork would copy torch's threads); at most two studies per worker in flight,
    so that a dead worker costs only those and the rest stay to do on resume."""
    context = multiprocessing.get_context("spawn")
    pending = deque(todo)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=process_drafter,
                             initargs=(max(1, cores() // workers),)) as pool:
        running: dict[Future[dict], BatchStudy] = {}
        while pending or running:
            while pending and len(running) < 2 * workers:
                study = pending.popleft()
                running[pool.submit(_draft_in_pool, study)] = study
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                study = running.pop(future)
                try:
                    write(future.result())
                except BrokenProcessPool:
                    write(failed(study, WORKER_DIED))
                    broken = True
            if broken:  # every study still in flight is lost with the pool
                for study in running.values():
                    write(failed(study, WORKER_DIED))
                return ("a worker process died, so the batch stopped; run the same command again to go on "
                        "(with --retry-errors to retry the studies it was drafting)")
    return None


def run_ray(todo: list[BatchStudy], write: Write, address: str, workers: int | None, cpus: int) -> str | None:
    """One actor per worker, each drafting one study at a time; results are written as they come."""
    import ray

    try:
        ray.init(address=address)
    except Exception as e:
        raise BatchError(f"cannot connect to Ray at {address}: {reason(e)}") from None
    try:
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        actor = ray.remote(num_cpus=cpus)(Drafter)
        idle = [actor.remote(cpus) for _ in range(n)]
        pending = deque(todo)
        running: dict[ray.ObjectRef, tuple[Any, BatchStudy]] = {}  # result -> (actor, its study)
        while pending or running:
            while idle and pending:
                study = pending.popleft()
                try:
                    images = study.pixels()
                except (OSError, UserError) as e:
                    write(failed(study, reason(e, study.base)))
                    continue
                worker = idle.pop()
                # ray's ActorProxy types an actor's methods as the plain methods, without .remote
                running[worker.draft_pixels.remote(  # type: ignore[attr-defined]
                    study.name, images, study.indication)] = (worker, study)
            if not running:
                break
            [ref], _ = ray.wait(list(running), num_returns=1)
            worker, study = running.pop(ref)
            try:
                write(ray.get(ref))
                idle.append(worker)
            except ray.exceptions.RayError as e:  # the actor died: its study fails, it takes no more
                write(failed(study, f"Ray worker died while drafting this study ({reason(e)})"))
        if pending:
            return "every Ray worker died, so the batch stopped; run the same command again to go on"
        return None
    finally:
        ray.shutdown()


@dataclass
class Summary:
    drafted: int = 0
    errors: int = 0
    skipped: int = 0
    earlier_errors: int = 0  # skipped because they failed before (--retry-errors retries them)
    seconds: float = 0.0
    stopped: str | None = None  # why the batch stopped early

    @property
    def ok(self) -> bool:
        """Every study stands drafted: none failed now, none is left failed from before."""
        return not (self.errors or self.earlier_errors or self.stopped)

    def line(self) -> str:
        rate = (self.drafted + self.errors) / (self.seconds / 60) if self.seconds else 0.0
        earlier = f" ({self.earlier_errors} failed before: --retry-errors retries them)" if self.earlier_errors else ""
        return (f"{self.drafted} drafted, {self.errors} errors, {self.skipped} skipped{earlier} "
                f"in {self.seconds:.1f} s ({rate:.1f} studies/minute)")


def run_batch(in_path: Path, out: Path, workers: int | None = None, ray_address: str | None = None,
              cpus_per_worker: int = 1, retry_errors: bool = False, quiet: bool = False) -> Summary:
    """Draft every study of `in_path` not already in `out`, appending one line per study as it finishes."""
    from tqdm import tqdm

    if (workers is not None and workers < 1) or cpus_per_worker < 1:
        raise BatchError("--workers and --cpus-per-worker must be at least 1")
    t0 = time.perf_counter()
    summary = Summary()
    with opened(in_path) as root:
        studies = find_studies(root)
        statuses = read_results(out)
        todo = []
        for study in studies:
            status = statuses.get(study.name)
            if status == "ok" or status == "error" and not retry_errors:
                summary.skipped += 1
                summary.earlier_errors += status == "error"
            else:
                todo.append(study)
        try:
            f = open(out, "a")
        except OSError as e:
            raise BatchError(f"cannot write {out.name}: {e.strerror or e}") from None
        with f, tqdm(total=len(todo), file=sys.stderr, disable=quiet or not todo, unit="study") as bar:
            def write(record: dict) -> None:
                f.write(json.dumps(record) + "\n")  # one write per line, then on disk before the next
                f.flush()
                os.fsync(f.fileno())
                if record["status"] == "ok":
                    summary.drafted += 1
                else:
                    summary.errors += 1
                    bar.set_postfix(errors=summary.errors)
                bar.update()

            if todo and ray_address:
                summary.stopped = run_ray(todo, write, ray_address, workers, cpus_per_worker)
            elif todo and (workers or default_workers()) == 1:
                summary.stopped = run_here(todo, write)
            elif todo:
                summary.stopped = run_pool(todo, write, workers or default_workers())
    summary.seconds = time.perf_counter() - t0
    return summary
