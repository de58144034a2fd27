"""The bottom layer (ARCHITECTURE.md): shared by every stage, importing none of them.

runs (the Run directory, atomic writes, JSON and safetensors I/O), hardware (what a run records, bf16 detection),
paths (model-path resolution, without torch), infer (batching and inference over a model), onnxrt (an ONNX Runtime
session called like a torch model), plots, html (the one page template), progress (bars)."""
