"""Inference runtimes for a codec's big sub-networks (issue 20): eager PyTorch, ``torch.compile``
(inductor) or ONNX Runtime, chosen by ``SEMCOM_RUNTIME`` (:func:`resolve_runtime`).

A model names the sub-networks worth it, with example inputs, in ``runtime_networks()`` (the
analysis and synthesis transforms: nearly all of the encode and decode time); :func:`use_runtime`
replaces them in place and runs each once on its example, so the first request pays no export or
compilation. The ONNX form has batch, height and width dynamic (one export serves every image
size and batch) and runs only where no gradient is wanted: with
gradients on (training, PGD, latent adaptation) the eager network runs, so every path keeps
working. Measured on this 2-core CPU (BENCHMARKS.md section 20): ONNX Runtime takes the analysis
and synthesis of the default codec at Kodak size in about 0.6 of eager PyTorch's time.
"""

from __future__ import annotations

import io
import threading

import torch
from torch import nn

RUNTIMES = ("eager", "compile", "onnx")
"""What :func:`use_runtime` accepts (``auto`` resolves to one of them)."""


def resolve_runtime(runtime: str, device: str) -> str:
    """``auto`` -> ``onnx`` on the CPU (the fastest measured there), ``eager`` on CUDA (ONNX
    Runtime's CUDA build is not a dependency; the GPU campaign measures the others); any other
    value is checked against :data:`RUNTIMES` (``ValueError`` listing them)."""
    if runtime == "auto":
        return "onnx" if torch.device(device).type == "cpu" else "eager"
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose auto or one of {', '.join(RUNTIMES)}")
    return runtime


class OnnxNetwork(nn.Module):
    """``network`` run by ONNX Runtime on the CPU where no gradient is wanted, by PyTorch otherwise.

    Inputs: the network's positional float tensors, each (B, ...) with B, and for 4-D tensors
    H and W, free (dynamic axes). Outputs: the network's one tensor, on the inputs' device.
    """

    def __init__(self, network: nn.Module, threads: int = 0):
        super().__init__()
        self.network = network
        self.threads = threads
        self._session = None
        self._lock = threading.Lock()

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (any(t.requires_grad for t in inputs)
                                        or any(p.requires_grad for p in self.network.parameters())):
            return self.network(*inputs)
        session = self._session or self._export(inputs)
        feed = {f"input{i}": t.detach().float().cpu().contiguous().numpy() for i, t in enumerate(inputs)}
        return torch.from_numpy(session.run(None, feed)[0]).to(inputs[0].device)

    def _export(self, inputs: tuple[torch.Tensor, ...]):
        import onnxruntime

        with self._lock:
            if self._session is None:
                names = [f"input{i}" for i in range(len(inputs))]
                axes = {name: ({0: "batch", 2: "height", 3: "width"} if t.dim() == 4 else {0: "batch"})
                        for name, t in zip(names, inputs)}
                axes["output"] = {0: "batch", 2: "out_height", 3: "out_width"}
                buffer = io.BytesIO()
                with torch.no_grad():
                    torch.onnx.export(self.network.float().cpu(), tuple(t.float().cpu() for t in inputs), buffer,
                                      input_names=names, output_names=["output"], dynamic_axes=axes,
                                      opset_version=17, dynamo=False)
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self.threads
                self._session = onnxruntime.InferenceSession(buffer.getvalue(), options,
                                                             providers=["CPUExecutionProvider"])
        return self._session


def use_runtime(model: nn.Module, runtime: str, threads: int = 0) -> nn.Module:
    """Run ``model``'s ``runtime_networks()`` on ``runtime`` (one of :data:`RUNTIMES`), in place;
    returns ``model`` (for serving: its state dict keys change, so save the model before). ``threads``: ONNX Runtime's intra-op threads (0: its default, every core).
    ``onnx`` needs the model on the CPU (``ValueError`` otherwise)."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if runtime == "eager":
        return model
    if runtime == "onnx" and any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("the onnx runtime runs on the CPU; use eager or compile on a GPU")
    networks = model.runtime_networks() if hasattr(model, "runtime_networks") else {}  # none: all eager
    device = next(model.parameters()).device
    for name, example in networks.items():
        network = getattr(model, name)
        served = torch.compile(network) if runtime == "compile" else OnnxNetwork(network, threads)
        with torch.no_grad():
            served(*(t.to(device) for t in example))  # export / compile now, not at the first request
        setattr(model, name, served)
    return model
