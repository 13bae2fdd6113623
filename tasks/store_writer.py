"""Writing a client store's arrays: chunks appended as they come, then laid out by client.

A split's records come in file order, which need not be client order, and a
chunk's x may be only as wide as its own longest record (bag-of-words ids).
The writer appends each prepared chunk to raw files as it comes (memory: one
chunk), then, only if needed, pads every chunk to the split's width and
gathers the rows client by client (stable, so each client keeps file order)
in bounded slices. The result is the same rows, in the same order, as
preparing the whole split at once in client order.
"""

from __future__ import annotations

import os

import numpy as np

_GATHER_ROWS = 1 << 16  # rows copied at a time by the padding and gathering passes


class StoreWriter:
    """Appends (x, y, owner) chunks under `folder`; `finish` writes x.bin and y.bin."""

    def __init__(self, folder: str):
        self._folder = folder
        self._files = {name: open(self._path(f"{name}.raw"), "wb")
                       for name in ("x", "y", "owner")}
        self._spec: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self._chunks: list[tuple[int, int]] = []  # (rows, x width) of each chunk

    def _path(self, name: str) -> str:
        return os.path.join(self._folder, name)

    def add(self, x: np.ndarray, y: np.ndarray, owners: np.ndarray) -> None:
        """Appends one chunk: its rows and the client position of each row."""
        if not len(x) == len(y) == len(owners):
            raise ValueError(f"a chunk of {len(x)} x, {len(y)} y and {len(owners)} owners")
        for name, rows in (("x", x), ("y", y)):
            trailing = rows.shape[2:] if name == "x" else rows.shape[1:]
            spec = self._spec.setdefault(name, (rows.dtype, trailing))
            if spec != (rows.dtype, trailing):
                raise ValueError(f"prepared {name} changed from {spec} to "
                                 f"{(rows.dtype, trailing)} between chunks")
            self._files[name].write(np.ascontiguousarray(rows).tobytes())
        self._files["owner"].write(np.asarray(owners, np.int64).tobytes())
        self._chunks.append((len(x), x.shape[1] if x.ndim > 1 else 0))

    def finish(self, num_clients: int, x_pad: int | None) -> dict:
        """Lays the rows out client by client into x.bin / y.bin.

        Returns:
            {"examples", "x": {dtype, shape}, "y": {dtype, shape}, "sizes"}: the
            arrays' layout and each client's number of rows (all clients).
        """
        for f in self._files.values():
            f.close()
        owners = np.fromfile(self._path("owner.raw"), np.int64)
        os.remove(self._path("owner.raw"))
        examples = len(owners)
        if not examples:
            return {"examples": 0, "sizes": np.zeros(num_clients, np.int64)}
        width = max(w for _, w in self._chunks)
        self._pad_x(width, x_pad)
        x_dtype, x_tail = self._spec["x"]
        y_dtype, y_tail = self._spec["y"]
        shapes = {"x": (x_dtype, (examples, width, *x_tail) if width else (examples,)),
                  "y": (y_dtype, (examples, *y_tail))}
        if examples > 1 and np.any(np.diff(owners) < 0):
            self._gather(np.argsort(owners, kind="stable"), shapes)
        else:
            for name in shapes:
                os.replace(self._path(f"{name}.raw"), self._path(f"{name}.bin"))
        return {"examples": examples,
                **{name: {"dtype": np.dtype(d).str, "shape": list(s)}
                   for name, (d, s) in shapes.items()},
                "sizes": np.bincount(owners, minlength=num_clients)}

    def _pad_x(self, width: int, x_pad: int | None) -> None:
        """Rewrites x.raw with every chunk padded to `width` (if the widths differ)."""
        if all(w == width for _, w in self._chunks):
            return
        if x_pad is None:
            raise ValueError("prepared x's width differs between chunks and the "
                             "preparation names no x_pad")
        dtype, tail = self._spec["x"]
        row_items = int(np.prod(tail, dtype=np.int64))
        with open(self._path("x.raw"), "rb") as source, \
                open(self._path("x.padded"), "wb") as target:
            for rows, chunk_width in self._chunks:
                chunk = np.fromfile(source, dtype, rows * chunk_width * row_items)
                padded = np.full((rows, width, *tail), x_pad, dtype)
                padded[:, :chunk_width] = chunk.reshape(rows, chunk_width, *tail)
                target.write(padded.tobytes())
        os.replace(self._path("x.padded"), self._path("x.raw"))

    def _gather(self, order: np.ndarray, shapes: dict) -> None:
        """Writes each array's rows in `order` (client order) into <name>.bin."""
        for name, (dtype, shape) in shapes.items():
            source = np.memmap(self._path(f"{name}.raw"), dtype=dtype, mode="r", shape=shape)
            target = np.memmap(self._path(f"{name}.bin"), dtype=dtype, mode="w+", shape=shape)
            for start in range(0, len(order), _GATHER_ROWS):
                rows = order[start:start + _GATHER_ROWS]
                target[start:start + len(rows)] = source[rows]
            target.flush()
            del source, target
            os.remove(self._path(f"{name}.raw"))

