"""Training runs one code path in one process or several (xr/train/engine.py): two CPU processes under
torchrun (gloo), started as a user would, fine-tune the generator on exported edits, each on its half,
and write one model."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file

from tests.conftest import free_port, write_dicom
from xr import store
from xr.config import ASSETS, ROOT
from xr.workstation import LOCAL_USER


def test_two_processes_fine_tune_the_generator_on_edits(env, workstation_factory, tmp_path, nih_pixels):
    ws = workstation_factory(env)
    for i, (pixels, extra) in enumerate([(nih_pixels, "Small left pleural effusion."),
                                         (np.fliplr(nih_pixels).copy(), "Mild cardiomegaly.")]):
        dcm = write_dicom(tmp_path / f"s{i}.dcm", pixels, view="PA", study_uid=f"1.2.826.0.1.{i + 30}")
        drafted = ws.draft([dcm], "dyspnea", LOCAL_USER)
        assert drafted.study_id is not None
        ws.approve(drafted.study_id, drafted.draft.report + "\n" + extra)
    edits, out = tmp_path / "edits.jsonl", tmp_path / "ft"
    assert store.export_edits(env, edits) == 2

    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                        "--master-port", str(free_port()), "-m", "xr", "train-generator", "--edits", str(edits),
                        "--out", str(out), "--epochs", "1", "--threads", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={"XR_DATA_DIR": str(env.data_dir), "XR_SALT": "test-salt", "PATH": "/usr/bin:/bin",
                            "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout)  # one JSON object: only the main process prints
    assert info["processes"] == 2 and info["studies"] == 2 and info["epochs"] == 1
    assert r.stderr.count("epoch 1 train_loss") == 1  # and only it logs
    tuned, base = load_file(str(out / "model.safetensors")), load_file(str(ASSETS / "dffg" / "model.safetensors"))
    assert set(tuned) == set(base) and any(not np.array_equal(tuned[k], base[k]) for k in base)
    assert json.loads((out / "finetune.json").read_text())["processes"] == 2
