import math

import numpy as np
import pytest
import torch

from modelfoundry.core.infer import TensorData
from modelfoundry.core.spec import InputSpec
from modelfoundry.models import REGISTRY, build_model
from modelfoundry.train import make_accelerator
from modelfoundry.train.config import EarlyStopping, TrainConfig
from modelfoundry.train.loop import class_weights, fit

SPEC = InputSpec.from_json({"task": "classification", "n_outputs": 2, "n_numeric": 4, "categorical": [], "text": {},
                            "max_length": 8, "image": None, "sequence": None})


def data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    return TensorData({"numeric": x}, y)


def model(seed=0):
    torch.manual_seed(seed)
    return build_model(REGISTRY["mlp"].config_cls(hidden=[8], dropout=0.0), SPEC)


def run_fit(cfg: TrainConfig, m=None, train=None, val=None):
    m = m or model()
    acc = make_accelerator(cfg.precision, cfg.grad_accum)
    result = fit(m, train or data(), val, "classification", cfg, None, acc)
    return acc.unwrap_model(m), result


def test_gradient_accumulation_matches_the_larger_batch():
    base = dict(optimizer="sgd", lr=0.1, epochs=2, grad_clip=None, precision="fp32", early_stopping=None, weight_decay=0.0)
    a, _ = run_fit(TrainConfig(batch_size=32, **base))
    b, _ = run_fit(TrainConfig(batch_size=16, grad_accum=2, **base))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine", "plateau"])
def test_optimizers_and_schedules_learn(optimizer, schedule):
    cfg = TrainConfig(optimizer=optimizer, schedule=schedule, warmup_ratio=0.1, lr=0.05, epochs=8, batch_size=16,
                      precision="fp32", early_stopping=None)
    _, result = run_fit(cfg, val=data(64, 1))
    h = result.history
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert h[-1]["val_accuracy"] > 0.8
    if schedule in ("linear", "cosine"):
        assert h[-1]["lr"] < 0.05 * 0.2


def test_early_stopping_restores_the_best_epoch():
    cfg = TrainConfig(lr=0.5, epochs=40, batch_size=16, precision="fp32",
                      early_stopping=EarlyStopping(metric="val_loss", patience=2))
    m, result = run_fit(cfg, val=data(64, 1))
    assert result.stopped_early and result.epochs_run < 40
    best = min(h["val_loss"] for h in result.history)
    assert result.best_metric == best
    assert result.history[result.best_epoch - 1]["val_loss"] == best


def test_without_validation_the_lowest_train_loss_is_kept():
    """Regression: train_loss was taken as higher-is-better, so a run without a validation split kept epoch 1."""
    cfg = TrainConfig(lr=0.05, epochs=6, batch_size=16, precision="fp32", early_stopping=None)
    _, result = run_fit(cfg)
    assert result.best_metric == min(h["train_loss"] for h in result.history)
    assert result.best_epoch > 1


def test_unknown_early_stopping_metric_lists_the_available_ones():
    with pytest.raises(ValueError, match="'val_f2' is not a metric runs report"):  # no such metric: at validation
        EarlyStopping(metric="val_f2")
    cfg = TrainConfig(epochs=1, precision="fp32", early_stopping=EarlyStopping(metric="val_rmse"))
    with pytest.raises(ValueError, match="'val_rmse' is not reported; available: .*val_f1_macro"):  # not this task's
        run_fit(cfg, val=data(32, 1))


def test_balanced_class_weights():
    w = class_weights(torch.tensor([0, 0, 0, 1]), 2)
    assert w.tolist() == pytest.approx([4 / 6, 2.0])
    cfg = TrainConfig(epochs=2, precision="fp32", class_weights="balanced", early_stopping=None)
    _, result = run_fit(cfg)
    assert math.isfinite(result.history[-1]["train_loss"])


def test_bf16_autocast_trains():
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.05, precision="bf16", early_stopping=None)
    _, result = run_fit(cfg, val=data(64, 1))
    assert result.history[-1]["val_accuracy"] > 0.7


def test_length_bucketing_cuts_padding_and_is_seeded():
    from modelfoundry.train.loop import EpochSampler

    lengths = torch.randint(1, 64, (1000,), generator=torch.Generator().manual_seed(0))

    def padded(sampler):
        order = torch.tensor(list(sampler))
        assert sorted(order.tolist()) == list(range(1000))  # every row once
        return sum(int(lengths[b].max()) * len(b) for b in order.split(16))

    plain, bucketed = EpochSampler(1000, 0), EpochSampler(1000, 0, lengths, 16)
    b = padded(bucketed)
    assert b < 1.25 * int(lengths.sum()) and b < 0.7 * padded(plain)
    again = EpochSampler(1000, 0, lengths, 16)
    assert list(again) == list(bucketed)
    again.set_epoch(1)
    assert list(again) != list(bucketed)


def test_outputs_are_torch_softmax_in_numpy_and_regression_takes_the_first_column():
    from modelfoundry.core.infer import as_outputs

    logits = torch.randn(5, 7) * 30  # large enough that a softmax without the max shift overflows
    probs = as_outputs(logits, "classification")
    assert isinstance(probs, np.ndarray) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, logits.softmax(-1).numpy(), rtol=1e-5, atol=1e-7)
    assert np.array_equal(as_outputs(logits, "regression"), logits[:, 0].numpy())


def test_predict_tensors_takes_the_models_token_budget_unless_told():
    from modelfoundry.core.infer import INFERENCE_TOKENS, predict_tensors

    class Widths(torch.nn.Module):  # a text model that records the shape of every batch it is given
        def __init__(self):
            super().__init__()
            self.shapes = []

        def forward(self, batch):
            self.shapes.append(tuple(batch["text:t"].shape))
            return batch["text:t"].float().sum(1, keepdim=True).expand(-1, 2)

    features = {"text:t": torch.ones(100, 16, dtype=torch.long), "len:t": torch.full((100,), 16)}
    model = Widths()
    predict_tensors(model, features, "classification")
    assert max(r * w for r, w in model.shapes) <= INFERENCE_TOKENS and len(model.shapes) == 4  # 32 rows x 16
    model.shapes, model.inference_tokens = [], 64  # what an ONNX Runtime model says
    predict_tensors(model, features, "classification")
    assert {r for r, _ in model.shapes} == {4} and len(model.shapes) == 25
    model.shapes = []
    predict_tensors(model, features, "classification", max_tokens=None, batch_size=50)
    assert model.shapes == [(50, 16), (50, 16)]


def test_inference_batches_sort_by_length_stay_in_budget_and_restore_order():
    from modelfoundry.core.infer import in_row_order, inference_batches

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 40, (300,), generator=g)
    ids = torch.randint(5, 100, (300, 40), generator=g) * (torch.arange(40)[None] < lengths[:, None])
    features = {"text:t": ids, "len:t": lengths}
    seen, padded = [], 0
    for idx, batch in inference_batches(features, None, batch_size=64, max_tokens=256):
        width = int(lengths[idx].max())
        assert batch["text:t"].shape == (len(idx), width)  # trimmed to the batch's longest text
        assert torch.equal(batch["text:t"], ids[idx][:, :width])
        assert len(idx) <= 64 and (len(idx) == 1 or len(idx) * width <= 256)
        seen += idx
        padded += len(idx) * width
    assert sorted(seen) == list(range(300))  # every row once
    assert padded < 1.1 * int(lengths.sum())  # sequential batches of 64 pad to ~2x
    assert lengths[seen].tolist() == sorted(lengths.tolist())
    out = np.stack([lengths[seen].numpy(), np.array(seen)], 1)
    assert np.array_equal(in_row_order(out, seen)[:, 1], np.arange(300))
    # without text: plain sequential batches
    plain = [idx for idx, _ in inference_batches({"numeric": torch.zeros(10, 2)}, None, 4)]
    assert plain == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_sgd_momentum_is_the_configured_one():
    from modelfoundry.train.optim import build_optimizer

    base = dict(optimizer="sgd", lr=0.1, epochs=2, batch_size=16, grad_clip=None, precision="fp32", early_stopping=None)
    sgd = build_optimizer(model(), TrainConfig(momentum=0.5, **base))
    assert sgd.param_groups[0]["momentum"] == 0.5 and sgd.param_groups[0]["fused"]  # torch's fused kernel on CPU
    assert build_optimizer(model(), TrainConfig(**{**base, "optimizer": "adamw"})).param_groups[0]["fused"]
    plain, heavy = run_fit(TrainConfig(momentum=0.0, **base))[0], run_fit(TrainConfig(momentum=0.9, **base))[0]
    assert not torch.allclose(plain.out.weight, heavy.out.weight)


@pytest.mark.parametrize("patience, factor, lrs", [(1, 0.25, [0.1, 0.1, 0.1, 0.025, 0.025]),
                                                   (3, 0.1, [0.1, 0.1, 0.1, 0.1, 0.1, 0.01])])
def test_plateau_cuts_the_lr_after_patience_epochs_without_improvement(patience, factor, lrs):
    # zero inputs, zero output weights and balanced labels: the trainable output bias starts at its optimum,
    # its gradient is zero and the validation loss stays ln 2, so every epoch after the first is a bad one
    m = model()
    for p in m.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        m.out.weight.zero_()
        m.out.bias.zero_()
    m.out.bias.requires_grad_(True)
    cfg = TrainConfig(optimizer="sgd", momentum=0.0, lr=0.1, epochs=len(lrs), batch_size=96, schedule="plateau",
                      plateau_patience=patience, plateau_factor=factor, precision="fp32", early_stopping=None)
    zero = data()
    zero.features["numeric"].zero_()
    zero.y[:] = torch.arange(len(zero.y)) % 2
    _, result = run_fit(cfg, m, train=zero, val=zero)
    assert [round(h["lr"], 6) for h in result.history] == lrs


def test_min_delta_counts_only_large_enough_improvements():
    def run(min_delta):
        cfg = TrainConfig(lr=0.05, epochs=20, batch_size=16, precision="fp32",
                          early_stopping=EarlyStopping(metric="val_loss", patience=2, min_delta=min_delta))
        return run_fit(cfg, val=data(64, 1))[1]

    strict, plain = run(10.0), run(0.0)
    assert strict.best_epoch == 1 and strict.epochs_run == 3 and strict.stopped_early  # nothing beats epoch 1 by 10
    assert plain.best_epoch > 1 and plain.epochs_run > 3


class _Widths(torch.nn.Module):
    """Records the padded width of every text batch it is given."""

    def __init__(self):
        super().__init__()
        self.bag, self.widths = torch.nn.EmbeddingBag(64, 2), []

    def forward(self, batch):
        self.widths.append(tuple(batch["text:t"].shape))
        return self.bag(batch["text:t"])


@pytest.mark.parametrize("bucket", [True, False])
def test_bucket_by_length_off_gives_random_batches(bucket):
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 64, (640,), generator=g)
    ids = torch.randint(1, 64, (640, 64), generator=g) * (torch.arange(64) < lengths[:, None])
    m = _Widths()
    cfg = TrainConfig(epochs=1, batch_size=32, precision="fp32", early_stopping=None, bucket_by_length=bucket)
    run_fit(cfg, m, train=TensorData({"text:t": ids, "len:t": lengths}, (lengths > 32).long()))
    padded = sum(rows * width for rows, width in m.widths)
    assert sum(r for r, _ in m.widths) == 640
    assert (padded < 1.25 * int(lengths.sum())) == bucket  # random batches of 32 pad to nearly 64 each


@pytest.mark.slow
def test_a_torch_run_does_not_import_tensorflow_for_its_tensorboard_logs(tmp_path):
    """TensorBoard imports TensorFlow whenever it is installed (the keras extra); the loop keeps it on its stub."""
    import subprocess
    import sys

    from ..conftest import cli_env, tabular_frame, tiny_config, write_yaml

    tabular_frame(120).to_csv(tmp_path / "t.csv", index=False)
    cfg = write_yaml(tmp_path / "c.yaml", tiny_config(tmp_path, {"path": str(tmp_path / "t.csv"), "target": "label"},
                                                      train={"epochs": 1}))
    code = ("import sys\nfrom modelfoundry.api import load_config, train\n"
            f"run = train(load_config({str(cfg)!r}))\n"
            "print(sorted(p.name for p in (run.path / 'tensorboard').iterdir())[0][:20], 'tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["events.out.tfevents.", "False"], out.stdout


@pytest.mark.slow
def test_compile_compiles_the_training_step_once_and_trains_the_same_weights():
    """train.compile: the step runs through torch.compile for the first batch's shape (96 rows in 40s: two of each
    epoch's three batches); the last, smaller batch runs uncompiled (no second compile); the weights match eager."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    base = dict(optimizer="sgd", lr=0.1, epochs=2, batch_size=40, grad_clip=None, precision="fp32",
                early_stopping=None, weight_decay=0.0)
    eager, _ = run_fit(TrainConfig(**base))
    assert not counters["frames"]["ok"]
    compiled, _ = run_fit(TrainConfig(compile=True, **base))
    assert counters["frames"]["ok"] == 1 and counters["stats"]["unique_graphs"] == 1  # compiled once, never again
    for pa, pb in zip(eager.parameters(), compiled.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)
