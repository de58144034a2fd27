"""The keras backend's model zoo: every family x input kind learns in Keras, round-trips through model.keras (predictions
equal), exports to ONNX with parity, and what it cannot do is refused by name."""

import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from modelfoundry.config import validate_config
from modelfoundry.core.onnxrt import OnnxModel
from modelfoundry.models import MODEL_TYPES, load_model, save_model
from modelfoundry.models.keras_io import KerasModule, load_keras_file
from modelfoundry.models.keras_zoo import FAMILIES, build_keras, keras_runtime

from .test_registry import INPUTS, SMALL, spec

TAKES = {"mlp": ["audio", "categorical", "image", "numeric", "sequence", "text"],
         "cnn": ["audio", "categorical", "image", "numeric", "sequence", "text"],
         "rnn": ["categorical", "numeric", "sequence", "text"],
         "transformer": ["categorical", "numeric", "sequence", "text"]}
CASES = [(name, kind) for name in FAMILIES for kind in TAKES[name]]
FAST = {("mlp", "categorical"), ("rnn", "text")}
"""Two cases in the fast tier (about 3 s each with TensorFlow tracing); every case in the full suite."""
LEARN_CASES = [pytest.param(n, k, marks=() if (n, k) in FAST else pytest.mark.slow) for n, k in CASES]


def _case(name: str, kind: str, n: int = 32):
    cfg = MODEL_TYPES[name](type=name, backend="keras", dropout=0.0, **SMALL[name])
    kinds, make = INPUTS[kind]
    s = spec(**kinds, **({} if kind == "numeric" else {"n_numeric": 1}))
    torch.manual_seed(0)
    batch = {**make(n), "numeric": torch.randn(n, s.n_numeric)} if s.n_numeric else make(n)
    if "text:t" in batch:  # right-padded ids: 0 after each text's length, as the tokenizer pads
        lengths = batch["len:t"]
        batch["text:t"] = batch["text:t"] * (torch.arange(batch["text:t"].shape[1])[None, :] < lengths[:, None])
    return cfg, s, batch


@pytest.mark.slow
@pytest.mark.parametrize("name,kind", LEARN_CASES)
def test_family_learns_each_input_kind_and_round_trips(name, kind, tmp_path):
    keras = keras_runtime("tensorflow")
    keras.utils.set_random_seed(0)
    cfg, s, batch = _case(name, kind)
    module = KerasModule(build_keras(cfg, s, "tensorflow"), s)
    y = torch.randint(0, 3, (32,)).numpy()
    m = module.keras_model
    m.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    first = m.evaluate(module.feeds(batch), y, verbose=0)
    m.fit(module.feeds(batch), y, epochs=30, batch_size=32, verbose=0)
    assert m.evaluate(module.feeds(batch), y, verbose=0) < first
    save_model(module, cfg, s, tmp_path)
    assert (tmp_path / "model.keras").is_file() and not (tmp_path / "weights.safetensors").exists()
    again, cfg2, _ = load_model(tmp_path)
    assert cfg2.backend == "keras" and isinstance(again, KerasModule)
    torch.testing.assert_close(module(batch), again(batch), atol=1e-6, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name,kind", CASES)
def test_family_exports_to_onnx_with_parity(name, kind, tmp_path):
    from modelfoundry.compress.onnx import export_keras_onnx, parity

    keras_runtime("tensorflow").utils.set_random_seed(0)
    cfg, s, batch = _case(name, kind, n=40)
    module = KerasModule(build_keras(cfg, s, "tensorflow"), s)
    record = export_keras_onnx(module, tmp_path / "m.onnx")
    assert set(record["inputs"]) == set(module.inputs.values())  # our batch keys, not Keras' names
    features = {k: v for k, v in batch.items()}
    assert parity(module, OnnxModel(tmp_path / "m.onnx"), features, "classification") <= 1e-4


@pytest.mark.slow
def test_text_padding_does_not_change_a_rows_output():
    """Masks come from the ids (0 = padding): the same texts padded wider give the same outputs, in every family."""
    keras_runtime("tensorflow").utils.set_random_seed(0)
    for name in FAMILIES:
        cfg, s, batch = _case(name, "text", n=8)
        module = KerasModule(build_keras(cfg, s, "tensorflow"), s)
        wider = {**batch, "text:t": torch.nn.functional.pad(batch["text:t"], (0, 5))}
        torch.testing.assert_close(module(batch), module(wider), atol=1e-5, rtol=0, msg=name)


def test_backend_keras_is_refused_for_families_it_does_not_build():
    with pytest.raises(ValueError, match="builds the families mlp, cnn, rnn, transformer; model.type 'pretrained'"):
        validate_config({"name": "x", "data": {"path": "a.csv", "target": "y"},
                         "model": {"type": "pretrained", "path": "minilm", "backend": "keras"}})
    with pytest.raises(ValueError, match="keras_backend and saved_model apply to backend: keras"):
        validate_config({"name": "x", "data": {"path": "a.csv", "target": "y"},
                         "model": {"type": "rnn", "keras_backend": "torch"}})
    with pytest.raises(ValueError, match="saved_model: a TensorFlow SavedModel needs keras_backend: tensorflow"):
        validate_config({"name": "x", "data": {"path": "a.csv", "target": "y"},
                         "model": {"type": "mlp", "backend": "keras", "keras_backend": "torch", "saved_model": True}})
    with pytest.raises(ValueError, match="keras_backend"):
        validate_config({"name": "x", "data": {"path": "a.csv", "target": "y"},
                         "model": {"type": "mlp", "backend": "keras", "keras_backend": "numpy"}})


def test_an_input_or_task_the_keras_family_does_not_take_is_named():
    cfg = MODEL_TYPES["rnn"](type="rnn", backend="keras")
    with pytest.raises(ValueError, match="'rnn' cannot take image inputs; on model.backend keras it takes"):
        build_keras(cfg, spec(image=[1, 8, 8]), "tensorflow")
    with pytest.raises(ValueError, match="trains for data.task classification, forecast, regression; this task is anomaly"):
        build_keras(MODEL_TYPES["mlp"](type="mlp", backend="keras"), spec(n_numeric=2, task="anomaly"), "tensorflow")


def test_a_second_keras_backend_in_one_process_is_refused():
    keras_runtime("tensorflow")
    with pytest.raises(ValueError, match="Keras already runs on tensorflow in this process"):
        keras_runtime("torch")


def test_a_keras_file_from_another_major_version_is_refused(tmp_path):
    keras_runtime("tensorflow")
    cfg, s, _ = _case("mlp", "numeric")
    module = KerasModule(build_keras(cfg, s, "tensorflow"), s)
    save_model(module, cfg, s, tmp_path)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(tmp_path / "model.keras") as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "metadata.json":
                data = json.dumps({**json.loads(data), "keras_version": "2.15.0"}).encode()
            dst.writestr(item, data)
    with pytest.raises(ValueError, match=r"old.keras: saved by Keras 2.15.0; this is Keras 3\."):
        load_keras_file(old)
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a Keras 3 .keras file"):
        load_keras_file(tmp_path / "junk.keras")


@pytest.mark.slow
def test_without_the_extra_the_error_gives_the_pip_command():
    """A process where keras cannot be imported (hidden by an import hook) is told the exact install command."""
    code = ("import sys, importlib.abc\n"
            "class Hide(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] in ('keras', 'tensorflow'): raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Hide())\n"
            "import importlib.util\n"
            "importlib.util.find_spec = lambda name, *a: None if name.split('.')[0] in ('keras', 'tensorflow') else 1\n"
            "from modelfoundry.models.keras_zoo import keras_runtime\n"
            "try:\n    keras_runtime('tensorflow')\nexcept ValueError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'modelfoundry[keras]'" in out.stdout, out.stderr[-2000:]
    assert "keras and tensorflow, which is not installed" in out.stdout


def test_keras_parameters_are_counted_without_memory():
    cfg, s, _ = _case("cnn", "image")
    module = KerasModule(build_keras(cfg, s, "tensorflow"), s)
    params = list(module.parameters())
    assert sum(p.numel() for p in params) == module.keras_model.count_params()
    assert all(p.device.type == "meta" for p in params)
    assert sum(p.numel() for p in params if p.requires_grad) == int(
        sum(np.prod(v.shape) for v in module.keras_model.trainable_weights))


@pytest.mark.slow
def test_omp_num_threads_sets_tensorflows_thread_pools():
    """Two trainings side by side on 2 cores slow each other up to 100x: under OMP_NUM_THREADS TensorFlow keeps to it."""
    code = ("from modelfoundry.models.keras_zoo import keras_runtime\n"
            "keras_runtime('tensorflow')\n"
            "import tensorflow as tf\n"
            "print(tf.config.threading.get_intra_op_parallelism_threads(), "
            "tf.config.threading.get_inter_op_parallelism_threads())\n")
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.split() == ["1", "1"], out.stderr[-2000:]


def test_recurrent_layers_start_as_torchs():
    """LSTM/GRU weights and biases uniform in +-1/sqrt(hidden), no forget-gate bias of 1 (Keras' default is Glorot,
    orthogonal, zero biases with ones for the forget gate)."""
    keras_runtime("tensorflow").utils.set_random_seed(0)
    for cell in ("lstm", "gru"):
        cfg = MODEL_TYPES["rnn"](type="rnn", backend="keras", cell=cell, hidden_size=16, embedding_dim=8)
        model = build_keras(cfg, spec(sequence=[6, 3]), "tensorflow")
        weights = {v.path: v.numpy() for v in model.weights if f"_{cell}0" in v.path}
        assert len(weights) == 3, weights.keys()
        for path, w in weights.items():
            assert np.abs(w).max() <= 0.25 + 1e-6, path  # 1/sqrt(16)
        bias = next(w for p, w in weights.items() if p.endswith("bias"))
        assert not np.isin(bias, [0.0, 1.0]).all()
