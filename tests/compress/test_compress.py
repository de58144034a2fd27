"""`foundry compress` end to end: each variant is a complete run of its own with compression.json, the report and
a model that Predictor loads (ONNX or torch); every step (ONNX, int8 dynamic and static, bf16, magnitude and
structured pruning with fine-tuning, distillation, a LoRA run merged then pruned) and every refusal."""

import json

import pandas as pd
import pytest
import torch
from safetensors import safe_open

from modelfoundry.api import compress
from modelfoundry.cli import main
from modelfoundry.compress.config import CompressConfig
from modelfoundry.compress.distill import init_from_teacher
from modelfoundry.config import load_config, run_config
from modelfoundry.core.runs import Run
from modelfoundry.predictor import Predictor
from modelfoundry.train import train

from ..conftest import SAMPLE, regression_frame, tabular_frame, tiny_config


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    d = tmp_path_factory.mktemp("compress")
    tabular_frame(400).to_csv(d / "t.csv", index=False)
    cfg = tiny_config(d, {"path": str(d / "t.csv"), "target": "label"}, model={"type": "mlp", "hidden": [32, 16]},
                      name="churn", train={"epochs": 4})
    return d, train(load_config(cfg)).path


@pytest.fixture(scope="module")
def lora_text(tmp_path_factory, tiny_bert):
    d = tmp_path_factory.mktemp("compress-text")
    cfg = tiny_config(d, {"path": str(SAMPLE), "target": "category"}, name="intents", train={"epochs": 2, "lr": 5e-3},
                      model={"type": "pretrained", "path": str(tiny_bert), "finetune": "lora", "hidden": [16]})
    return train(load_config(cfg)).path


def _variant(source, **settings):
    run = compress(source, CompressConfig.model_validate(settings))
    return run, json.loads((run.path / "compression.json").read_text())


def _rows(d):
    return pd.read_csv(d / "t.csv").head(40)


@pytest.mark.slow
def test_onnx_variant_is_a_complete_run_that_predicts_like_the_source(table):
    d, source = table
    run, summary = _variant(source, quantize="none")
    assert run.status == "complete" and run.path.parent.name == "churn-onnx"
    assert "## Evaluation" in (run.path / "MODEL_CARD.md").read_text(encoding="utf-8")  # a variant has its own card
    assert run.path.parent.parent == source.parent.parent  # beside the source's name folder
    assert [s["stage"] for s in summary["stages"]] == ["source", "onnx fp32"]
    assert summary["onnx"]["parity_max_abs_diff"] <= 1e-4
    for s in summary["stages"]:
        assert s["size_bytes"] > 0 and s["batch_1"]["batch"] == 1 and s["batch_32"]["batch"] == 32
        assert s["batch_32"]["p95_ms"] >= s["batch_32"]["p50_ms"] > 0 and "accuracy" in s["metrics"]
    assert (run.path / "compression_report.html").read_text().count("<tr>") == 3
    assert (run.path / "plots" / "accuracy_vs_latency.png").stat().st_size > 1000
    assert sorted(p.name for p in run.model_dir.iterdir()) == ["architecture.json", "model.onnx", "preprocessor.json"]
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert metrics["backend"] == "onnx" and metrics["test"]["accuracy"] == summary["stages"][1]["metrics"]["accuracy"]
    assert run.manifest()["source"] == str(source)
    pred = Predictor.load(run.path)
    assert pred.backend == "onnx"
    a, b = pred.predict(_rows(d)), Predictor.load(source).predict(_rows(d))
    assert (a["prediction"] == b["prediction"]).all()
    assert (a["prob_yes"] - b["prob_yes"]).abs().max() < 1e-5
    with pytest.raises(ValueError, match="ONNX model only"):
        Predictor.load(run.path, backend="torch")
    with pytest.raises(ValueError, match="no model/model.onnx"):
        Predictor.load(source, backend="onnx")


@pytest.mark.slow
def test_int8_dynamic_and_structured_pruning_with_fine_tuning_then_int8_static(table):
    d, source = table
    run, summary = _variant(source, quantize="int8", parity_rows=20)
    assert run.path.parent.name == "churn-int8" and summary["quantize"]["weights"] == "int8"
    assert summary["onnx"]["parity_rows"] == 20
    assert summary["stages"][-1]["stage"] == "int8"
    # a row's answer alone vs in a batch: float rounding for torch and ONNX fp32; dynamic int8's per-batch
    # activation scales move it (and the summary says so)
    consistency = {s["stage"]: s["batch_consistency"] for s in summary["stages"]}
    assert consistency["source"]["rows"] == 32 and consistency["source"]["max_abs_diff"] < 1e-5
    assert consistency["onnx fp32"]["max_abs_diff"] < 1e-5
    assert consistency["int8"]["max_abs_diff"] > 1e-3 and 0 <= consistency["int8"]["changed"] <= 32
    assert [n for n in summary["notes"] if "depends on the rows batched with it" in n][0].startswith("int8:")
    probs = Predictor.load(run.path).predict(_rows(d))["prob_yes"]
    assert (probs - Predictor.load(source).predict(_rows(d))["prob_yes"]).abs().max() < 0.05

    run, summary = _variant(source, prune={"method": "structured", "amount": 0.5, "finetune_epochs": 2},
                            quantize="int8-static", calibration_rows=64)
    assert run.path.parent.name == "churn-pruned50-int8static"
    names = [s["stage"] for s in summary["stages"]]
    assert names == ["source", "pruned 0.5", "pruned 0.5 + fine-tuned", "onnx fp32", "int8-static"]
    assert summary["stages"][1]["parameters"] < summary["stages"][0]["parameters"]
    assert summary["prune"]["head_neurons_removed"] == 16 + 8
    assert summary["prune"]["finetune"]["epochs"] == 2 and summary["prune"]["finetune"]["lr"] == pytest.approx(1e-3)
    assert summary["quantize"]["calibration_rows"] == 64
    arch = json.loads((run.model_dir / "architecture.json").read_text())
    assert arch["resized"]["trunk.0.weight"][0] == 16
    assert len(Predictor.load(run.path).predict(_rows(d))) == 40
    assert summary["stages"][-1]["batch_consistency"]["max_abs_diff"] < 1e-5  # calibrated, fixed ranges
    assert not [n for n in summary["notes"] if "batched with it" in n]


def test_bf16_and_magnitude_pruning_stay_torch_runs(table, capsys, monkeypatch):
    import re

    d, source = table
    monkeypatch.setenv("FOUNDRY_PROGRESS", "1")
    run, summary = _variant(source, quantize="bf16", onnx=False,
                            prune={"method": "magnitude", "amount": 0.5, "finetune_epochs": 1, "finetune_lr": 0.01})
    assert re.search(r"compress: +\d+ *stage", capsys.readouterr().err)  # progress through the stages
    assert run.path.parent.name == "churn-sparse50-bf16" and summary["backend"] == "torch"
    assert summary["prune"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert summary["prune"]["after_finetune"]["sparsity"] == pytest.approx(0.5, abs=0.01)  # zeros kept after tuning
    assert any("do not get faster" in n for n in summary["notes"])
    assert not [n for n in summary["notes"] if "batched with it" in n]  # bf16 rounding, not batch scales
    assert summary["stages"][-1]["size_bytes"] < summary["stages"][0]["size_bytes"] * 0.6
    with safe_open(run.model_dir / "weights.safetensors", "pt") as fh:
        assert str(fh.get_tensor("trunk.0.weight").dtype) == "torch.bfloat16"
    pred = Predictor.load(run.path)
    assert pred.backend == "torch" and pred.model.inference_dtype == "bfloat16"
    agree = (pred.predict(_rows(d))["prediction"] == Predictor.load(source).predict(_rows(d))["prediction"]).mean()
    assert agree > 0.8


@pytest.mark.slow
def test_regression_variant_reports_batch_consistency_in_target_units(tmp_path):
    cfg = tiny_config(tmp_path, {"path": str(tmp_path / "r.csv"), "target": "y"}, name="price", train={"epochs": 4})
    regression_frame(300).to_csv(tmp_path / "r.csv", index=False)
    run, summary = _variant(train(load_config(cfg)).path, quantize="int8")
    assert summary["main_metric"] == "rmse"
    consistency = {s["stage"]: s["batch_consistency"] for s in summary["stages"]}
    # alone vs batched in the target's units: a row predicted alone but left standardised would differ by ~y's scale
    for stage in ("source", "onnx fp32"):
        assert consistency[stage]["rows"] == 32 and consistency[stage]["max_abs_diff"] < 1e-4
        assert "changed" not in consistency[stage]  # labels exist only for classification
    assert consistency["int8"]["max_abs_diff"] > 0  # per-batch activation scales
    assert summary["stages"][-1]["metrics"]["rmse"] < 1.0  # y spans ~±10; int8 keeps the fit


def test_distilled_student(table):
    d, source = table
    run, summary = _variant(source, distill={"student": {"hidden": [8]}, "epochs": 6, "lr": 0.02, "alpha": 0.7},
                            quantize="none", onnx=False)
    assert [s["stage"] for s in summary["stages"]] == ["source", "distilled"]
    assert summary["stages"][1]["parameters"] < summary["stages"][0]["parameters"]
    assert summary["distill"]["alpha"] == 0.7 and len(summary["distill"]["history"]) == 6
    arch = json.loads((run.model_dir / "architecture.json").read_text())
    assert arch["model"]["hidden"] == [8]
    assert summary["stages"][1]["metrics"]["accuracy"] > 0.7  # the table is learnable; the student learns it
    assert Predictor.load(run.path).classes == ["no", "yes"]


@pytest.mark.slow
def test_student_starts_from_the_teachers_embeddings_top_layer_and_head(lora_text, tiny_bert):
    student = {"type": "pretrained", "path": str(tiny_bert), "layers": 1, "finetune": "full", "hidden": [16]}
    # one epoch at a negligible lr: the saved student is still its starting point
    run, summary = _variant(lora_text, distill={"student": student, "init": "teacher", "epochs": 1, "lr": 1e-9},
                            quantize="none", onnx=False)
    assert summary["distill"]["init"] == "teacher" and summary["distill"]["teacher_layers"] == {"text__text": [1]}
    teacher = Predictor.load(lora_text).model.state_dict()  # adapters merged on load
    got = Predictor.load(run.path).model.state_dict()
    enc = "encoders.text__text.model."
    pairs = {f"{enc}encoder.layer.0.attention.self.query.weight": f"{enc}encoder.layer.1.attention.self.query.weight",
             f"{enc}encoder.layer.0.output.LayerNorm.bias": f"{enc}encoder.layer.1.output.LayerNorm.bias",
             f"{enc}embeddings.word_embeddings.weight": f"{enc}embeddings.word_embeddings.weight",
             "trunk.0.weight": "trunk.0.weight", "out.bias": "out.bias"}
    for s_name, t_name in pairs.items():
        assert torch.allclose(got[s_name].float(), teacher[t_name].float(), atol=1e-5), s_name
    assert not torch.allclose(got[f"{enc}encoder.layer.0.attention.self.query.weight"],
                              teacher[f"{enc}encoder.layer.0.attention.self.query.weight"], atol=1e-3)

    with pytest.raises(ValueError, match="student's trunk.0.weight .* has no counterpart"):
        _variant(lora_text, distill={"student": {**student, "hidden": [8]}, "init": "teacher"})
    with pytest.raises(ValueError, match="needs the student's model.path to be the teacher's"):
        _variant(lora_text, distill={"student": {**student, "path": "minilm"}, "init": "teacher"})
    with pytest.raises(ValueError, match="init: teacher copies a pretrained teacher's layers"):
        CompressConfig.model_validate({"distill": {"student": {"hidden": [8]}, "init": "teacher"}})
    # the roles swapped: the 2-layer LoRA run as the student of the 1-layer one
    with pytest.raises(ValueError, match="the student has 2 layers, the teacher only 1"):
        init_from_teacher(Predictor.load(lora_text).model, Predictor.load(run.path).model)


def test_spread_keeps_evenly_spaced_layers_ending_with_the_last():
    from modelfoundry.compress.distill import spread

    assert spread(6, 3) == [1, 3, 5] and spread(6, 2) == [2, 5] and spread(6, 6) == list(range(6))
    assert spread(12, 4) == [2, 5, 8, 11] and spread(2, 1) == [1]


@pytest.mark.slow
def test_lora_run_is_merged_pruned_exported_and_quantized(lora_text):
    run, summary = _variant(lora_text, prune={"method": "structured", "amount": 0.5}, quantize="int8")
    assert summary["prune"]["attention_heads_removed"] == 2 and summary["prune"]["ffn_units_removed"] == 64
    arch = json.loads((run.model_dir / "architecture.json").read_text())
    assert arch["model"]["finetune"] == "full" and "base" not in arch
    assert summary["onnx"]["parity_max_abs_diff"] <= 1e-4
    out = Predictor.load(run.path).predict(["my card has not arrived", "how do I top up"])
    assert len(out) == 2 and out.filter(like="prob_").sum(axis=1).round(3).eq(1.0).all()


@pytest.mark.slow
def test_parity_failure_leaves_a_failed_run(lora_text):
    with pytest.raises(ValueError, match="parity check failed"):
        compress(lora_text, CompressConfig(parity_tolerance=1e-12))
    failed = [Run(p.parent) for p in (lora_text.parent.parent / "intents-onnx").glob("*/manifest.json")]
    assert failed and all(r.status == "failed" for r in failed)
    with pytest.raises(ValueError, match="status is 'failed'"):
        Predictor.load(failed[0].path)


def test_refusals(table, tmp_path):
    d, source = table
    with pytest.raises(ValueError, match="no compression asked"):
        compress(source)
    with pytest.raises(ValueError, match="int8 runs in ONNX Runtime; keep onnx: true"):
        CompressConfig(quantize="int8", onnx=False)
    import shutil

    moved = tmp_path / "copy"
    shutil.copytree(source.parent.parent, moved)
    copy = moved / source.parent.name / source.name
    cfg = run_config(copy)
    data = cfg.resolve_path(cfg.data.path)
    backup = data.read_bytes()
    try:
        data.write_bytes(backup + b"0.1,0.2,red,yes\n")
        with pytest.raises(ValueError, match="data file changed since the source run was trained"):
            compress(copy, CompressConfig())
    finally:
        data.write_bytes(backup)


def test_cli(table, capsys):
    d, source = table
    assert main(["compress", str(source), "--quantize", "int8", "--set", "compress.latency_calls=5"]) == 0
    out = capsys.readouterr()
    last = Run.open(out.out.strip().splitlines()[-1])
    assert last.status == "complete" and last.path.parent.name == "churn-int8"
    assert "int8" in out.err and "rows/s" in out.err
    assert main(["compress", str(source), "--prune", "structured:half"]) == 2
    assert "expected METHOD:AMOUNT" in capsys.readouterr().err
    assert main(["compress", str(source), "--set", "train.lr=1"]) == 2
    assert "takes compress.* paths" in capsys.readouterr().err
    assert main(["compress", str(source), "--quantize", "int8", "--no-onnx"]) == 2
    assert "keep onnx: true" in capsys.readouterr().err
    assert main(["compress", str(source), "--distill", str(d / "missing.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_prefix_runs_are_refused(tmp_path, tiny_bert):
    cfg = tiny_config(tmp_path, {"path": str(SAMPLE), "target": "category"}, name="p", train={"epochs": 1},
                      model={"type": "pretrained", "path": str(tiny_bert), "finetune": "prefix"})
    source = train(load_config(cfg)).path
    with pytest.raises(ValueError, match="virtual tokens, which do not merge"):
        compress(source, CompressConfig())
