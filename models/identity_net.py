"""dlib's face-descriptor ResNet, read from its own model file and run with numpy.

The dlib-bin wheel runs this network without BLAS: about 75 ms a face chip on one core, which made the
clip check's three descriptors half its cost. The same weights as matrix products on numpy's BLAS give
the same 128 numbers (to about 1e-6) in about a quarter of the time.

The network (dlib's `dnn_face_recognition_ex.cpp`, a ResNet-29 at 150×150): a 7×7/2 convolution, a
3×3/2 max pool, then 14 residual blocks of two 3×3 convolutions each, at 32, 64, 128, 256 and 256
channels. Each batch normalisation is folded into an affine layer (`gamma * x + beta` per channel). A
block that halves the size has a 2×2/2 average pool on its shortcut, and its sum is as large as the larger
of the two operands, with the smaller one zero-padded (dlib's `add_prev`). At the end comes a global average
and a 256→128 matrix.

The file is dlib's serialization: the layers from the input upwards, each named by a versioned string,
and each parameter tensor as four integers and raw little-endian float32s. Integers are a control byte
(the low nibble is the byte count, 0x80 the sign) and then little-endian bytes. Only the layers' own
fields are read here; the structure above is checked against the file's layer sequence as it loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

CHIP = 150
# input_rgb_image_sized's per-channel means; its inputs are (pixel - mean) / 256.
MEAN_RGB = np.array([122.782, 117.001, 104.298], np.float32)
_LAYER = re.compile(rb"\x01[\x03-\x20](con_4|affine_|relu_|max_pool_2|avg_pool_2|add_prev_|fc_2)")


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def int(self) -> int:
        control = self.data[self.pos]
        size = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if control & 0x80 else value

    def string(self) -> str:
        size = self.int()
        text = self.data[self.pos : self.pos + size].decode()
        self.pos += size
        return text

    def tensor(self) -> np.ndarray:
        if self.int() != 2:
            raise ValueError("unknown tensor serialization")
        count = int(np.prod([self.int() for _ in range(4)]))
        values = np.frombuffer(self.data, "<f4", count, self.pos)
        self.pos += 4 * count
        return values.astype(np.float32)


@dataclass(frozen=True)
class _Conv:
    weights: np.ndarray  # (k * k * in channels, filters), rows in (y, x, channel) order
    bias: np.ndarray
    size: int
    stride: int
    padding: int


@dataclass(frozen=True)
class _Block:
    first: _Conv
    first_affine: tuple[np.ndarray, np.ndarray]
    second: _Conv
    second_affine: tuple[np.ndarray, np.ndarray]
    shortcut_pool: int  # 0: the block's input as it is; 2: a 2×2/2 average of it


class DlibResNet:
    """The descriptor network; `__call__` maps aligned 150×150 RGB chips to 128-d descriptors."""

    def __init__(
        self,
        stem: _Conv,
        stem_affine: tuple[np.ndarray, np.ndarray],
        pool: tuple[int, int],
        blocks: list[_Block],
        fc: np.ndarray,
    ) -> None:
        self.stem, self.stem_affine, self.pool, self.blocks, self.fc = stem, stem_affine, pool, blocks, fc

    @classmethod
    def load(cls, path: Path) -> DlibResNet:
        layers = _read_layers(path.read_bytes())
        kinds = [layer[0] for layer in layers]
        if kinds[:4] != ["con", "affine", "relu", "max"] or kinds[-2:] != ["avg", "fc"]:
            raise ValueError(f"{path.name}: not dlib's face-descriptor ResNet ({kinds[:4]} … {kinds[-2:]})")
        blocks: list[_Block] = []
        i = 4
        plain = ["con", "affine", "relu", "con", "affine", "add_prev", "relu"]
        halving = ["con", "affine", "relu", "con", "affine", "avg", "add_prev", "relu"]
        while kinds[i] == "con":
            down = kinds[i : i + 8] == halving
            if not down and kinds[i : i + 7] != plain:
                raise ValueError(f"{path.name}: unexpected layers at {i}: {kinds[i : i + 8]}")
            pool = layers[i + 5][1] if down else (0, 0)
            if down and pool != (2, 2):
                raise ValueError(f"{path.name}: unexpected shortcut pool {pool}")
            blocks.append(_Block(layers[i][1], layers[i + 1][1], layers[i + 3][1], layers[i + 4][1], pool[0]))
            i += 8 if down else 7
        if kinds[i : i + 2] != ["avg", "fc"] or layers[i][1] != (0, 1):
            raise ValueError(f"{path.name}: unexpected head {kinds[i:]}")
        return cls(layers[0][1], layers[1][1], layers[3][1], blocks, layers[i + 1][1])

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) uint8 RGB chips → (N, 128) float32 descriptors."""
        if chips.ndim != 4 or chips.shape[1:] != (CHIP, CHIP, 3):
            raise ValueError(f"chips must be (N, {CHIP}, {CHIP}, 3), not {chips.shape}")
        x = (chips.astype(np.float32) - MEAN_RGB) / 256.0
        x = np.maximum(_affine(_conv(x, self.stem), self.stem_affine), 0)
        x = _pool(x, *self.pool, np.max)
        for block in self.blocks:
            y = np.maximum(_affine(_conv(x, block.first), block.first_affine), 0)
            y = _affine(_conv(y, block.second), block.second_affine)
            halve = block.shortcut_pool
            shortcut = _pool(x, halve, halve, np.mean) if halve else x
            x = np.maximum(_padded_sum(y, shortcut), 0)
        pooled = x.mean(axis=(1, 2))
        return (pooled @ self.fc).astype(np.float32)


def _read_layers(data: bytes) -> list[tuple[str, Any]]:
    """Every layer with parameters or a shape, from the input upwards. The search resumes after what
    was read, so float data is never taken for a layer name."""
    layers: list[tuple[str, Any]] = []
    pos = 0
    while (found := _LAYER.search(data, pos)) is not None:
        reader = _Reader(data, found.start())
        name = reader.string()
        if name == "con_4":
            params = reader.tensor()
            filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.int() for _ in range(7))
            if rows != cols or stride_y != stride_x or pad_y != pad_x:
                raise ValueError("only square convolutions are expected")
            channels = (params.size - filters) // (filters * rows * cols)
            weights = params[: filters * channels * rows * cols].reshape(filters, channels, rows, cols)
            matrix = np.ascontiguousarray(weights.transpose(2, 3, 1, 0).reshape(-1, filters))
            layers.append(("con", _Conv(matrix, params[-filters:], rows, stride_y, pad_y)))
        elif name == "affine_":
            params = reader.tensor()
            half = params.size // 2
            layers.append(("affine", (params[:half], params[half:])))
        elif name in ("max_pool_2", "avg_pool_2"):
            rows, cols, stride_y, stride_x, pad_y, pad_x = (reader.int() for _ in range(6))
            if pad_y or pad_x:
                raise ValueError("padded pooling is not expected")
            layers.append((name[:3], (rows, stride_y)))
        elif name == "fc_2":
            outputs, inputs = reader.int(), reader.int()
            layers.append(("fc", reader.tensor().reshape(inputs, outputs)))
        else:
            layers.append((name.rstrip("_"), None))
        pos = reader.pos
    return layers


def _conv(x: np.ndarray, conv: _Conv) -> np.ndarray:
    """Cross-correlation of NHWC `x` as one matrix product: each window a row, gathered by k×k block
    copies (a strided view reshaped would copy element by element, slower than the product itself)."""
    k, stride, pad = conv.size, conv.stride, conv.padding
    if pad:
        x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    n, h, w, c = x.shape
    rows, cols = (h - k) // stride + 1, (w - k) // stride + 1
    windows = np.empty((n, rows, cols, k, k, c), np.float32)
    for dy in range(k):
        for dx in range(k):
            windows[:, :, :, dy, dx] = x[
                :, dy : dy + stride * (rows - 1) + 1 : stride, dx : dx + stride * (cols - 1) + 1 : stride
            ]
    out = windows.reshape(n * rows * cols, -1) @ conv.weights
    out += conv.bias
    return out.reshape(n, rows, cols, -1)


def _windows(x: np.ndarray, size: int) -> np.ndarray:
    """Every size×size window of NHWC `x`, as a view: (N, H', W', C, size, size)."""
    return sliding_window_view(x, (size, size), axis=(1, 2))


def _affine(x: np.ndarray, affine: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    x *= affine[0]
    x += affine[1]
    return x


def _pool(x: np.ndarray, size: int, stride: int, reduce: object) -> np.ndarray:
    windows = _windows(x, size)[:, ::stride, ::stride]
    return np.asarray(reduce(windows, axis=(-2, -1)), np.float32)  # type: ignore[operator]


def _padded_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a + b, as large as the larger of the two in each dimension, the smaller zero-padded."""
    if a.shape == b.shape:
        return a + b
    out = np.zeros([max(i, j) for i, j in zip(a.shape, b.shape, strict=True)], np.float32)
    out[:, : a.shape[1], : a.shape[2], : a.shape[3]] += a
    out[:, : b.shape[1], : b.shape[2], : b.shape[3]] += b
    return out
