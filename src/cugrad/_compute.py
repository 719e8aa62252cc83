"""``cugrad compute``: the gradient of an array stored in a file, saved to a ``.npz`` file.

The command's promises, in the order it keeps them:

* it never writes over a file it reads (the input or a coordinates file), compared as files (device
  and inode), so another spelling of the path or a hard link is caught too; not even ``--force``
  lifts this;
* it never replaces an existing output unless ``--force`` says so, and both refusals come before any
  work is done;
* the output appears only when complete (a temporary file beside it, then a rename), and nothing is
  left behind on any error or interrupt;
* the arrays written are ``numpy.gradient``'s, bit for bit.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import threading
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

import cugrad
from cugrad._cli import PROG, CommandError, _first_line, _Parser, atomic_path

EXIT_OK = 0
# Slabs of about this many input bytes are computed per call while a progress bar is shown.
CHUNK_BYTES = 32 << 20
# Without tqdm, a run still busy after this many seconds on a terminal says how to get a bar.
PROGRESS_HINT_AFTER_S = 10.0
PROGRESS_HINT = (
    "a progress bar needs tqdm: pip install tqdm (or, in a cugrad checkout, "
    'pip install ".[progress]")'
)

EPILOG = """\
spacing, as numpy.gradient takes it:
  (none)               unit spacing on every axis
  one number           the same spacing on every differentiated axis
  one per axis         each a number or a coordinates file: a .npy file holding a 1-D array as
                       long as that axis; every SPACING that is not a number is read as a file
                       (write ./2.5 for a file named 2.5)
  --coords FILE        coordinates files only, one per differentiated axis: repeat the option
                       (--coords z.npy --coords y.npy --coords x.npy) or give a comma list
                       (--coords z.npy,y.npy,x.npy)

which spacing goes with which axis:
  the k-th spacing goes with the k-th differentiated axis, in numpy's axis order (the order of
  the array's shape), or in the order --axis lists the axes. For a field of shape (nz, ny, nx)
  differentiated on every axis, give z's coordinates first, then y's, then x's:
      cugrad compute field.npy --coords z.npy,y.npy,x.npy -o grad.npz
  and the output holds axis0 (d/dz), axis1 (d/dy) and axis2 (d/dx).

--axis:
  one axis per occurrence or a comma list: --axis 2 --axis 0, or --axis 2,0 (write --axis=-1,0
  when the list starts with a negative number).

output:
  OUTPUT.npz holds one array per differentiated axis, named after the axis index: axis0, axis1, ...
  (negative --axis values are normalized), or with --stack one array named gradient of shape
  (number of axes,) + input shape. ".npz" is appended to OUTPUT if missing, as numpy.savez does.
  An existing OUTPUT is replaced only with --force; the input and the coordinates files are never
  written over. The file appears only when complete (written to a temporary file, then renamed).

examples:
  cugrad compute field.npy -o grad.npz                       unit spacing, every axis
  cugrad compute field.npy 0.1 -o grad.npz                   spacing 0.1 on every axis
  cugrad compute field.npy 0.1 y.npy 0.5 -o grad.npz         number, coordinates, number
  cugrad compute field.npy --coords z.npy,y.npy,x.npy -o grad.npz
  cugrad compute runs.npz --key temp --axis -1 --edge-order 2 -o dtemp.npz
  cugrad compute field.npy --stack -o grad.npz --force       one (ndim, ...) array "gradient"
"""


# --- arguments --------------------------------------------------------------------------------


def _axis_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid axis {text!r}: give an integer or a comma list such as 2,0"
        ) from None


def _file_list(text: str) -> list[str]:
    names = [part for part in text.split(",") if part]
    if not names:
        raise argparse.ArgumentTypeError("give a coordinates file name")
    return names


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``cugrad compute`` to ``parser``."""
    if isinstance(parser, _Parser):
        parser.intermixed = True
    parser.add_argument("input", metavar="INPUT", help="a .npy file, or a .npz file (see --key)")
    parser.add_argument(
        "spacing",
        metavar="SPACING",
        nargs="*",
        help="none, one number for every axis, or one number or coordinates .npy file per "
        "differentiated axis, in axis order (see below)",
    )
    parser.add_argument(
        "-o", "--output", metavar="OUTPUT.npz", required=True, help="the .npz file to write"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace OUTPUT if it exists (the input and coordinates files are never replaced)",
    )
    parser.add_argument(
        "--coords",
        metavar="FILE.npy",
        action="extend",
        type=_file_list,
        help="a coordinates file (repeat the option, or give a comma list), one per "
        "differentiated axis in axis order, instead of SPACING",
    )
    parser.add_argument(
        "--axis",
        metavar="AX",
        action="extend",
        type=_axis_list,
        help="an axis to differentiate (repeat the option, or give a comma list), in this "
        "order; negative values count from the end (default: every axis)",
    )
    parser.add_argument(
        "--edge-order",
        type=int,
        choices=(1, 2),
        default=1,
        help="accuracy of the one-sided differences at the edges (default: 1)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "numpy", "cupy"),
        default=None,
        help="where to compute (default: CUGRAD_BACKEND, else auto: the NumPy backend, or a "
        "usable GPU for inputs large enough to gain from it; cupy returns results to the host)",
    )
    parser.add_argument(
        "--stack",
        action="store_true",
        help="write one array 'gradient' of shape (number of axes,) + input shape",
    )
    parser.add_argument("--key", help="the array to read from a .npz INPUT holding several")


# --- the command ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """``cugrad compute``: load, differentiate with :func:`cugrad.gradient`, save atomically."""
    if args.spacing and args.coords:
        raise CommandError(
            "give the spacing as SPACING arguments or with --coords, not both (--coords takes "
            "one file per occurrence or a comma list: --coords z.npy,y.npy,x.npy)"
        )
    force_file = bool(args.coords)
    tokens = list(args.coords) if args.coords else list(args.spacing)
    output = _output_path(args.output)
    read = [args.input] + [t for t in tokens if force_file or _number(t) is None]
    _refuse_to_overwrite(output, read, force=args.force)

    f = _load_input(args.input, args.key)
    axes = _normalize_axes(args.axis, f.ndim)
    spacing = [_read_spacing(token, force_file=force_file) for token in tokens]
    _check_spacing(spacing, f.shape, axes)
    axis_arg: Any = (
        None if args.axis is None else (args.axis[0] if len(args.axis) == 1 else tuple(args.axis))
    )

    progress = _Progress(enabled=_stderr_is_terminal())
    try:
        with _hint_if_slow(progress), atomic_path(output, replace=args.force) as tmp:
            arrays = _compute(f, spacing, axes, axis_arg, args, progress)
            _write_npz(tmp, arrays, progress)
    finally:
        progress.close()
    names = ", ".join(name for name, _ in arrays) or "no arrays (nothing to differentiate)"
    shape_note = f" of {arrays[0][1].dtype}, shape {arrays[0][1].shape}" if arrays else ""
    print(f"wrote {output}: {names}{shape_note}")
    return EXIT_OK


def _refuse_to_overwrite(output: str, inputs: list[str], force: bool) -> None:
    """Refuse, before any work, to write over an input, or over anything without ``--force``."""
    if not os.path.lexists(output):
        return
    for path in inputs:
        if _same_file(output, path):
            raise CommandError(
                f"output {output} is the file {path} this command reads; cugrad compute never "
                "writes over its input (not even with --force): choose another -o"
            )
    if not force:
        raise CommandError(
            f"output {output} exists: add --force to replace it, or choose another -o"
        )


def _same_file(a: str, b: str) -> bool:
    # Another spelling of the path, a symbolic or a hard link: the same device and inode.
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _output_path(name: str) -> str:
    if os.path.isdir(name):
        raise CommandError(f"output {name} is a directory; give a file name")
    if not name.endswith(".npz"):
        name += ".npz"  # as numpy.savez does, so that np.load(name) finds what was written
    if os.path.isdir(name):
        raise CommandError(f"output {name} is a directory; give a file name")
    directory = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(directory):
        raise CommandError(f"cannot write {name}: directory {directory} does not exist")
    return name


# --- reading ----------------------------------------------------------------------------------

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip


def _file_kind(path: str, what: str) -> str:
    """``"npy"`` or ``"npz"`` from the file's first bytes (the name may lie or be missing)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(NPY_MAGIC))
    except FileNotFoundError:
        raise CommandError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise CommandError(f"{what} {path} is a directory, not a .npy or .npz file") from None
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if head == NPY_MAGIC:
        return "npy"
    if head[:4] in ZIP_MAGICS:
        return "npz"
    if not head:
        raise CommandError(f"{what} {path} is empty")
    raise CommandError(f"{what} {path} is not a .npy or .npz file")


def _load_input(path: str, key: str | None) -> np.ndarray:
    kind = _file_kind(path, "input file")
    if kind == "npy":
        if key is not None:
            raise CommandError(f"--key applies to .npz inputs only; {path} is a .npy file")
        if _npy_dtype(path).hasobject:
            raise CommandError(
                f"{path} holds Python objects (dtype object); cugrad reads numeric arrays only"
            )
        try:
            # Memory-mapped: a file larger than memory is read as the computation goes.
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - truncated, object dtype, unreadable...
            raise CommandError(f"cannot read {path}: {_first_line(exc)}") from None
        # A plain ndarray view of the map: cugrad hands ndarray subclasses (np.memmap is one) to
        # numpy.gradient itself, which would forgo the fast path.
        plain: np.ndarray = array.view(np.ndarray)
        return plain
    try:
        # Our own handle: np.load leaks the one it opens when the archive is damaged.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as archive:
            names = list(archive.files)
            key = _choose_key(path, names, key)
            loaded: np.ndarray = archive[key]
            return loaded
    except CommandError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails in many ways
        raise CommandError(f"cannot read {path}: {_first_line(exc)}") from None


def _npy_dtype(path: str) -> np.dtype[Any]:
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            read_header = (
                fmt.read_array_header_1_0 if version == (1, 0) else (fmt.read_array_header_2_0)
            )
            return read_header(fh)[2]
    except Exception as exc:  # noqa: BLE001 - a damaged header fails in many ways
        raise CommandError(f"cannot read {path}: {_first_line(exc)}") from None


def _choose_key(path: str, names: list[str], key: str | None) -> str:
    if key is not None:
        if key not in names:
            listed = ", ".join(names) if names else "no arrays"
            raise CommandError(f"{path} has no array named {key!r} (it holds: {listed})")
        return key
    if len(names) == 1:
        return names[0]
    if not names:
        raise CommandError(f"{path} holds no arrays")
    raise CommandError(
        f"{path} holds {len(names)} arrays ({', '.join(names)}): choose one with --key"
    )


def _normalize_axes(axis: list[int] | None, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    try:
        return tuple(np.lib.array_utils.normalize_axis_tuple(axis, ndim, argname="--axis"))
    except ValueError as exc:  # AxisError (a ValueError) or a repeated axis
        raise CommandError(str(exc)) from None


@dataclass(frozen=True)
class _Coordinates:
    path: str
    values: np.ndarray


def _number(token: str) -> int | float | None:
    """Return the number a SPACING token spells (an int when it reads as one), else None."""
    for parse in (int, float):
        try:
            return parse(token)
        except ValueError:
            pass
    return None


def _read_spacing(token: str, force_file: bool) -> Any:
    """Read one spacing: a number, else a coordinates file."""
    if not force_file:
        number = _number(token)
        if number is not None:
            return number
        if not os.path.exists(token):
            raise CommandError(
                f"spacing {token!r} is neither a number nor an existing coordinates file"
            )
    what = "coordinates file"
    if _file_kind(token, what) != "npy":
        raise CommandError(f"{what} {token} must be a .npy file holding one 1-D array")
    try:
        values = np.load(token, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001
        raise CommandError(f"cannot read {what} {token}: {_first_line(exc)}") from None
    return _Coordinates(token, values)


def _check_spacing(spacing: list[Any], shape: tuple[int, ...], axes: tuple[int, ...]) -> None:
    # numpy's rule (none, one scalar, or one per axis), told in the command's words; numpy itself
    # still validates everything afterwards.
    count, naxes = len(spacing), len(axes)
    per_axis = count == naxes
    if count == 0 or (count == 1 and np.ndim(_value(spacing[0])) == 0):
        return
    if not per_axis:
        if count == 1:
            raise CommandError(
                f"one coordinates file was given for {naxes} differentiated axes: give one "
                "spacing per axis (a number or a coordinates file each), or select one axis "
                "with --axis"
            )
        raise CommandError(
            f"{count} spacings were given for {naxes} differentiated "
            f"ax{'is' if naxes == 1 else 'es'} of the {len(shape)}-D input: give none, "
            f"one number for every axis, or exactly {naxes} (one per axis)"
        )
    for item, axis in zip(spacing, axes, strict=True):
        if not isinstance(item, _Coordinates):
            continue
        values = item.values
        if values.ndim > 1:
            raise CommandError(
                f"coordinates file {item.path} must hold a 1-D array, not shape {values.shape}"
            )
        if values.ndim == 1 and values.shape[0] != shape[axis]:
            raise CommandError(
                f"coordinates file {item.path} holds {values.shape[0]} values but axis {axis} "
                f"has {shape[axis]} points"
            )


def _value(item: Any) -> Any:
    return item.values if isinstance(item, _Coordinates) else item


# --- computing --------------------------------------------------------------------------------


def _compute(
    f: np.ndarray,
    spacing: list[Any],
    axes: tuple[int, ...],
    axis_arg: Any,
    args: argparse.Namespace,
    progress: _Progress,
) -> list[tuple[str, np.ndarray]]:
    """Compute the named result arrays; in slabs (so that the bar moves) when a bar is shown."""
    varargs = [_value(item) for item in spacing]
    kwargs = {"edge_order": args.edge_order, "backend": args.backend}
    with _numpy_warnings_as_lines(), _as_command_errors(f):
        pieces = _pieces(f, axes, args.edge_order) if progress.enabled else None
        if pieces is None:
            progress.phase("computing the gradient", total=None)
            result = cugrad.gradient(f, *varargs, axis=axis_arg, stack=args.stack, **kwargs)
            return _named_arrays(result, axes, args.stack)
        # One axis at a time, each in slabs along another axis: a slab's gradient along an axis
        # it spans whole is exactly the full array's there, so the result is the same bits.
        progress.phase("computing the gradient", total=f.nbytes * len(axes))
        per_axis = varargs if len(varargs) == len(axes) else varargs * len(axes)
        outputs: list[np.ndarray] = []
        stacked: np.ndarray | None = None
        for i, axis in enumerate(axes):
            progress.describe(f"computing axis{axis}")
            spacing_k = per_axis[i : i + 1]
            target: np.ndarray | None = None
            for index in pieces[axis]:
                part = _on_host(cugrad.gradient(f[index], *spacing_k, axis=axis, **kwargs))
                if target is None:
                    if args.stack:
                        if stacked is None:
                            stacked = np.empty((len(axes),) + f.shape, dtype=part.dtype)
                        target = stacked[i]
                    else:
                        target = np.empty(f.shape, dtype=part.dtype)
                        outputs.append(target)
                target[index] = part
                progress.advance(f[index].nbytes)
        if args.stack:
            assert stacked is not None
            return [("gradient", stacked)]
        return [(f"axis{axis}", out) for axis, out in zip(axes, outputs, strict=True)]


def _pieces(
    f: np.ndarray, axes: tuple[int, ...], edge_order: int
) -> dict[int, list[tuple[slice, ...]]] | None:
    """For each axis, the slabs (index tuples) to compute it in; None for one call instead."""
    if f.ndim < 2 or not axes or f.size == 0 or f.nbytes < 2 * CHUNK_BYTES:
        return None
    if any(f.shape[axis] < edge_order + 1 for axis in axes):
        return None  # one call, so that numpy's error comes before any work
    pieces = {}
    for axis in axes:
        # Split along the other axis with the largest stride: contiguous slabs of the file.
        split = max((a for a in range(f.ndim) if a != axis), key=lambda a: abs(f.strides[a]))
        rows = max(1, CHUNK_BYTES * f.shape[split] // f.nbytes)
        pieces[axis] = [
            tuple(slice(lo, lo + rows) if a == split else slice(None) for a in range(f.ndim))
            for lo in range(0, f.shape[split], rows)
        ]
    return pieces


@contextlib.contextmanager
def _numpy_warnings_as_lines() -> Iterator[None]:
    # numpy's RuntimeWarnings (divide by zero for repeated coordinates...) are worth telling,
    # but as one line each, like the errors, not as warning-module source excerpts.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in dict.fromkeys(str(w.message).strip().split("\n")[0] for w in caught):
        print(f"{PROG}: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def _as_command_errors(f: np.ndarray) -> Iterator[None]:
    try:
        yield
    except MemoryError:
        raise CommandError(
            f"not enough memory for the gradient of a {f.shape} {f.dtype} array "
            "(it needs one output array of that size per axis)"
        ) from None
    except (TypeError, ValueError, IndexError, ArithmeticError, RuntimeError, ImportError) as exc:
        # AxisError is a ValueError and IndexError; numpy's messages say what is wrong.
        raise CommandError(f"cannot compute the gradient: {_first_line(exc)}") from None


def _named_arrays(result: Any, axes: tuple[int, ...], stack: bool) -> list[tuple[str, np.ndarray]]:
    if stack:
        return [("gradient", _on_host(result))]
    parts = list(result) if isinstance(result, (tuple, list)) else [result]
    if len(parts) != len(axes):  # a contract of cugrad.gradient; never silently mislabel
        raise CommandError(f"internal error: {len(parts)} results for {len(axes)} axes")
    return [(f"axis{axis}", _on_host(part)) for axis, part in zip(axes, parts, strict=True)]


def _on_host(array: Any) -> np.ndarray:
    if isinstance(array, np.ndarray):
        return array
    # The file goes to disk from the host: this copy is the command's explicit purpose.
    return array.get() if hasattr(array, "get") else np.asarray(array)


# --- writing ----------------------------------------------------------------------------------


def _npy_header(array: np.ndarray) -> bytes:
    """Return the ``.npy`` header ``np.lib.format.write_array`` writes before ``array``'s data."""
    fmt = np.lib.format
    header = fmt.header_data_from_array_1_0(array)
    for write_header in (fmt.write_array_header_1_0, fmt.write_array_header_2_0):
        buffer = io.BytesIO()
        try:
            write_header(buffer, header)
        except ValueError:  # too long for format 1.0
            continue
        return buffer.getvalue()
    raise CommandError(f"cannot write an array of dtype {array.dtype} to a .npy member")


def npz_payload_bytes(arrays: list[tuple[str, np.ndarray]]) -> int:
    """Count the bytes of the ``.npy`` members (headers and data): the write bar's total."""
    return sum(len(_npy_header(array)) + array.nbytes for _, array in arrays)


def _write_npz(path: str, arrays: list[tuple[str, np.ndarray]], progress: _Progress) -> None:
    # np.savez's own layout (stored, zip64 members), written one member at a time so that the
    # progress bar moves with the bytes and nothing but the arrays themselves is held in memory.
    progress.phase("writing", total=npz_payload_bytes(arrays))
    with open(path, "wb") as fh:
        with zipfile.ZipFile(fh, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, array in arrays:
                progress.describe(f"writing {name}")
                with zf.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                    np.lib.format.write_array(
                        _CountingWriter(member, progress), array, allow_pickle=False
                    )
        fh.flush()
        os.fsync(fh.fileno())


class _CountingWriter:
    """A write-only file that reports the bytes going through it to the progress bar."""

    def __init__(self, raw: Any, progress: _Progress) -> None:
        self._raw, self._progress = raw, progress

    def write(self, data: Any) -> int:
        written: int = self._raw.write(data)
        self._progress.advance(memoryview(data).nbytes)
        return written


# --- progress ---------------------------------------------------------------------------------


class _Progress:
    """A tqdm bar in bytes, when stderr is a terminal and tqdm is there.

    Two phases, each with its own total: computing (the input bytes, once per differentiated axis)
    and writing (the bytes of the ``.npy`` members). In a pipe or a log file a bar is noise, so
    there is none; without tqdm the command runs the same, with one hint if it runs long.
    """

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
        self.terminal = enabled
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(
                total=None,
                file=sys.stderr,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
                desc=PROG,
                dynamic_ncols=True,
            )

    @property
    def enabled(self) -> bool:
        """Whether a bar is shown."""
        return self._bar is not None

    def phase(self, description: str, total: int | None) -> None:
        if self._bar is not None:
            self._bar.set_description_str(description, refresh=False)
            self._bar.reset(total=total)

    def describe(self, description: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(description)

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.update(nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextlib.contextmanager
def _hint_if_slow(progress: _Progress) -> Iterator[None]:
    """On a terminal without tqdm, say once how to get a progress bar if the run takes long."""
    if not progress.terminal or progress.enabled or not math.isfinite(PROGRESS_HINT_AFTER_S):
        yield
        return
    timer = threading.Timer(
        PROGRESS_HINT_AFTER_S,
        lambda: print(f"{PROG}: hint: {PROGRESS_HINT}", file=sys.stderr, flush=True),
    )
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False
