"""A run's evaluations: rebuilt from a finished run folder, they give its last metrics line and test.json."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import metrics


def test_validate_and_test_result_repeat_a_finished_run(reverse_run, tmp_path):
    from embtool.training.evaluation import test_result, validate
    from embtool.training.loop import build
    from embtool.training.runfolder import RunFolder, resume_config

    copy = tmp_path / "run"
    shutil.copytree(reverse_run, copy)  # build rewrites config.json: leave the shared run alone
    cfg = resume_config(copy)
    run = build(cfg, RunFolder(copy), torch.device("cpu"), lambda e, i: None)  # weights of the last epoch
    last = metrics(reverse_run)[-1]
    got = validate(run.model, run.prep, run.cfg, run.device, run.amp)  # as the run validated (--amp auto)
    assert got["val_loss"] == pytest.approx(last["val_loss"], rel=1e-6)
    assert got["val_bleu"] == pytest.approx(last["val_bleu"], abs=1e-9)
    want = json.loads((reverse_run / "test.json").read_text())
    assert test_result(run) == want  # the best checkpoint, decoded again
