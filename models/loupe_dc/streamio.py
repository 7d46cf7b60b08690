"""Reading checkpoints and writing graphs a tensor at a time: what the streaming converters share.

- `Shards`: a checkpoint's safetensors tensors by name, read whole or a few rows at a time with plain reads;
- `ExternalData`: one external data file, appended to tensor by tensor;
- `quantize_rows`: a Linear weight to MatMulNBits' 4-bit or 8-bit blocks (symmetric, block 32).
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

BLOCK = 32
ACCURACY_LEVEL = 4  # MatMulNBits: int8 dot products on CPU
CHUNK_ROWS = 8192  # output rows quantized at a time: bounds the fp32 scratch of a big matrix (the lm_head)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM where Linux has it (getrusage's maxrss carries a forking
    parent's size into a child that execs, VmHWM starts with the new program), else maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024 ** 2)


class Shards:
    """A checkpoint's tensors by name, read one at a time (or a few rows at a time) with plain reads.

    Not through safetensors' own loader: it memory-maps the shards, and every page a conversion reads then counts
    in the process's resident memory until the end (13.5 GB for a 7B model, file-backed but counted). The format
    is simple enough to read directly: an 8-byte header length, a JSON header of name -> dtype, shape and byte
    range, then the data.
    """

    DTYPES = {"F16": np.float16, "BF16": np.uint16, "F32": np.float32, "F64": np.float64}

    def __init__(self, checkpoint: Path):
        index = checkpoint / "model.safetensors.index.json"
        paths = sorted({checkpoint / f for f in json.loads(index.read_text())["weight_map"].values()}) if index.exists() \
            else sorted(checkpoint.glob("*.safetensors"))
        self.tensors: dict[str, tuple[Path, int, dict]] = {}
        for path in paths:
            with open(path, "rb") as f:
                size = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(size))
            for name, info in header.items():
                if name != "__metadata__":
                    self.tensors[name] = (path, 8 + size, info)
        if not self.tensors:
            raise ValueError(f"{checkpoint} holds no safetensors weights")

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def shape(self, name: str) -> list[int]:
        return list(self._info(name)[2]["shape"])

    def _info(self, name: str) -> tuple[Path, int, dict]:
        if name not in self.tensors:
            raise ValueError(f"the checkpoint lacks {name}")
        path, base, info = self.tensors[name]
        if info["dtype"] not in self.DTYPES:
            raise ValueError(f"{name} is {info['dtype']}: the streaming converter reads F16, BF16, F32 and F64")
        return path, base, info

    def get(self, name: str) -> np.ndarray:
        """The tensor in float32."""
        shape = self.shape(name)
        return self.rows(name, 0, shape[0]) if shape else self.rows(name, 0, 1).reshape(())

    def rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of the tensor in float32, without reading the rest."""
        path, base, info = self._info(name)
        dtype = np.dtype(self.DTYPES[info["dtype"]])
        shape = info["shape"] or [1]
        row = int(np.prod(shape[1:])) * dtype.itemsize
        begin, end = info["data_offsets"]
        if end - begin != shape[0] * row or not 0 <= start <= stop <= shape[0]:
            raise ValueError(f"{name}: its byte range does not match its shape {shape} (a damaged shard)")
        with open(path, "rb") as f:
            f.seek(base + begin + start * row)
            raw = f.read((stop - start) * row)
        if len(raw) != (stop - start) * row:
            raise ValueError(f"{path.name} ends inside {name} (a truncated shard)")
        a = np.frombuffer(raw, dtype).reshape([stop - start, *shape[1:]])
        if info["dtype"] == "BF16":  # the high half of a float32
            return (a.astype(np.uint32) << 16).view(np.float32)
        return a.astype(np.float32)


class ExternalData:
    """One external data file, appended to tensor by tensor; each tensor points at its bytes."""

    def __init__(self, path: Path):
        self.path = path
        self.file = open(path, "wb")
        self.offset = 0

    def begin(self, name: str, dtype: int, dims: list[int]) -> TensorProto:
        pad = -self.offset % 64
        if pad:
            self.file.write(b"\0" * pad)
            self.offset += pad
        t = TensorProto()
        t.name, t.data_type = name, dtype
        t.dims.extend(dims)
        t.data_location = TensorProto.EXTERNAL
        self._start = self.offset
        return t

    def write(self, data: np.ndarray) -> None:
        raw = np.ascontiguousarray(data).tobytes()
        self.file.write(raw)
        self.offset += len(raw)

    def end(self, t: TensorProto) -> TensorProto:
        for key, value in (("location", self.path.name), ("offset", str(self._start)), ("length", str(self.offset - self._start))):
            entry = t.external_data.add()
            entry.key, entry.value = key, value
        return t

    def tensor(self, name: str, array: np.ndarray) -> TensorProto:
        t = self.begin(name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape))
        self.write(array)
        return self.end(t)

    def close(self) -> None:
        self.file.close()


def quantize_rows(weight: np.ndarray, bits: int = 4, block: int = BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """A torch-layout Linear weight (N, K) -> MatMulNBits' B (N, K/block, block * bits / 8) uint8 and scales
    (N, K/block) float32. 4 bits: onnxruntime's own quantizer. 8 bits (which it lacks before 1.22): per block,
    scale = max |w| / 127 and q = round(w / scale) + 128, the zero point MatMulNBits assumes without one."""
    if bits == 8:
        return _quantize_rows_8bit(weight, block)
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    n, k = weight.shape
    blocks = -(-k // block)
    b_t = np.ascontiguousarray(weight.T)  # (K, N): the MatMul layout the quantizer reads
    if blocks * block != k:
        b_t = np.pad(b_t, ((0, blocks * block - k), (0, 0)))
    packed = np.zeros((n, blocks, block // 2), np.uint8)
    scales = np.zeros(n * blocks, np.float32)
    zero_points = np.zeros(n * ((blocks + 1) // 2), np.uint8)
    quantize_matmul_4bits(packed, b_t, scales, zero_points, block, n, k, True)
    return packed, scales.reshape(n, blocks)




def _quantize_rows_8bit(weight: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    n, k = weight.shape
    blocks = -(-k // block)
    w = weight if blocks * block == k else np.pad(weight, ((0, 0), (0, blocks * block - k)))
    w = w.reshape(n, blocks, block)
    scales = np.abs(w).max(axis=2) / 127.0
    safe = np.where(scales == 0, 1.0, scales)
    q = np.clip(np.rint(w / safe[:, :, None]), -127, 127).astype(np.int16) + 128
    return q.astype(np.uint8), scales.astype(np.float32)
