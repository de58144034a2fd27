"""A Keras model in the Run directory and in the rest of the toolkit.

`KerasModule` wraps a Keras model in the torch calling convention every stage uses (`model(batch) -> logits`), so
that evaluation, reports, the Predictor, serving and the ONNX export path read a keras run as they read a torch
one. On disk: `model/model.keras` (Keras' own zip of config JSON + HDF5 weights; no pickle, loaded in safe mode)
beside the same architecture.json and preprocessor.json."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from ..core.runs import atomic_write_bytes, atomic_write_text
from ..core.spec import InputSpec
from .base import Built
from .keras_zoo import input_names, keras_runtime, running_backend

KERAS_FILE = "model.keras"


class KerasModule(Built):
    """A Keras model called like our torch models. `parameters()` lists meta-device stand-ins of its variables (shape
    and trainability, no memory): what parameter counts and cost estimates read."""

    def __init__(self, model, spec: InputSpec):
        super().__init__()
        object.__setattr__(self, "keras_model", model)  # not a torch submodule (on Keras' torch backend it is one)
        self.spec = spec
        self.inputs = input_names(spec)
        self._call = None

    def _stand_ins(self) -> list[torch.nn.Parameter]:
        return [torch.nn.Parameter(torch.empty(tuple(v.shape), device="meta"), requires_grad=v.trainable)
                for v in self.keras_model.weights]

    def parameters(self, recurse: bool = True):
        return iter(self._stand_ins())

    def named_parameters(self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True):
        return iter((f"{prefix}{v.path}", p) for v, p in zip(self.keras_model.weights, self._stand_ins()))

    def feeds(self, batch: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        """The batch's tensors as the Keras inputs (int64 ids and categories, float32 values)."""
        out = {}
        for name, key in self.inputs.items():
            t = batch[key].detach().cpu()
            out[name] = t.numpy().astype(np.int64 if not t.is_floating_point() else np.float32, copy=False)
        return out

    FLOP_BASIS = "forward FLOPs counted by {counter} on {rows} rows; a training step counted as 3x its forward pass"

    def count_flops(self, batch: dict[str, torch.Tensor], train: bool) -> int:
        """FLOPs of one forward pass (x3 for a training step: forward and twice the work backward), 2 per
        multiply-add, counted by TensorFlow's profiler on the tensorflow backend and torch's counter on torch."""
        keras = keras_runtime()
        feeds = self.feeds(batch)
        if keras.backend.backend() == "torch":
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter, torch.no_grad():
                self.keras_model({k: torch.from_numpy(v) for k, v in feeds.items()}, training=False)
            forward = int(counter.get_total_flops())
        elif keras.backend.backend() == "jax":  # XLA's cost analysis of the compiled forward pass
            import jax

            m = self.keras_model
            trainable = [v.value for v in m.trainable_variables]
            frozen = [v.value for v in m.non_trainable_variables]
            fn = jax.jit(lambda t, f, x: m.stateless_call(t, f, x, training=False)[0])
            cost = fn.lower(trainable, frozen, feeds).compile().cost_analysis()
            cost = cost[0] if isinstance(cost, list) else cost
            forward = int(cost.get("flops", 0))
        else:
            import logging

            import tensorflow as tf

            logging.getLogger("tensorflow").setLevel(logging.ERROR)  # the v1 profiler's deprecation notice
            specs = {k: tf.TensorSpec(v.shape, tf.as_dtype(v.dtype), name=k) for k, v in feeds.items()}
            graph = tf.function(lambda x: self.keras_model(x, training=False)).get_concrete_function(specs).graph
            opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
            opts["output"] = "none"
            forward = int(tf.compat.v1.profiler.profile(graph, options=opts).total_float_ops)
        return forward * (3 if train else 1)

    def flop_counter(self) -> str:
        return {"tensorflow": "TensorFlow's profiler", "jax": "XLA's cost analysis"}.get(
            keras_runtime().backend.backend(), "torch's flop counter")

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        feeds = self.feeds(batch)
        if self._call is None:
            keras = keras_runtime()
            if keras.backend.backend() == "tensorflow":  # a traced graph: eager calls cost ~20 ms each
                import tensorflow as tf

                self._call = tf.function(lambda x: self.keras_model(x, training=False), reduce_retracing=True)
            elif keras.backend.backend() == "jax":  # Keras' compiled predict step (jit, once per input shape)
                self._call = self.keras_model.predict_on_batch
            else:
                def call(x):
                    with torch.no_grad():
                        return self.keras_model({k: torch.from_numpy(v) for k, v in x.items()}, training=False)
                self._call = call
        out = self._call(feeds)
        out = out.detach().cpu().numpy() if torch.is_tensor(out) else out
        return torch.from_numpy(np.array(out, dtype=np.float32))  # a copy: TensorFlow's arrays are read-only


def save_keras(module: KerasModule, cfg: BaseModel, directory: Path, weights: bool = True) -> dict:
    """model/model.keras (atomically) + architecture.json (config, input spec, the Keras version and backend);
    weights=False: architecture.json only (an ONNX variant's record of what its graph was made from)."""
    import tempfile

    keras = keras_runtime()
    directory.mkdir(parents=True, exist_ok=True)
    if weights:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / KERAS_FILE
            module.keras_model.save(path)
            atomic_write_bytes(directory / KERAS_FILE, path.read_bytes())
    if weights and getattr(cfg, "saved_model", False):  # a TensorFlow SavedModel for TF Serving, written whole, then renamed in
        import shutil

        target, tmp = directory / "saved_model", directory / ".saved_model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        module.keras_model.export(str(tmp), format="tf_saved_model", verbose=False,
                                  input_signature=[keras_signature(module.keras_model)])
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    arch = {"model": cfg.model_dump(mode="json"), "spec": module.spec.to_json(),
            "keras": {"version": keras.__version__, "backend": keras.backend.backend(), "inputs": module.inputs}}
    atomic_write_text(directory / "architecture.json", json.dumps(arch, indent=2))
    return {"weights_bytes": (directory / KERAS_FILE).stat().st_size if weights else 0,
            "tensors_saved": len(module.keras_model.weights) if weights else 0, "tensors_from_base": 0}


def keras_signature(model) -> list:
    """TensorFlow specs of a functional model's inputs (batch and text length stay variable), named as its inputs."""
    import tensorflow as tf

    return [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in model.inputs]


def keras_file_version(path: Path) -> str:
    """The Keras version that wrote a `.keras` file (its metadata.json); refuses a file that is not one."""
    try:
        with zipfile.ZipFile(path) as z:
            return str(json.loads(z.read("metadata.json"))["keras_version"])
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as exc:
        raise ValueError(f"{path}: not a Keras 3 .keras file ({type(exc).__name__}: {exc}); a Keras 2 .h5 or "
                         "SavedModel is not read here") from None


def load_keras_file(path: Path, compile: bool = False):
    """A `.keras` file on the running Keras (safe mode: no code from the file). A file from another Keras major
    version is refused, naming both."""
    keras = keras_runtime(None if running_backend() else _saved_backend(path.parent))
    saved = keras_file_version(path)
    if saved.split(".")[0] != keras.__version__.split(".")[0]:
        raise ValueError(f"{path}: saved by Keras {saved}; this is Keras {keras.__version__} (another major version "
                         f"is not read: retrain, or load it with Keras {saved.split('.')[0]}.x)")
    return keras.saving.load_model(path, compile=compile, safe_mode=True)


def _saved_backend(directory: Path) -> str | None:
    arch = directory / "architecture.json"
    if arch.is_file():
        return json.loads(arch.read_text(encoding="utf-8")).get("keras", {}).get("backend")
    return None


def load_keras(directory: Path, cfg: BaseModel, spec: InputSpec) -> KerasModule:
    return KerasModule(load_keras_file(directory / KERAS_FILE), spec)
