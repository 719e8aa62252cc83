"""The ``cugrad`` command line: ``demo``, ``compute``, ``info``, ``bench`` and ``compile``.

Each subcommand lives in a module exposing ``configure_parser(parser)`` and ``run(args) -> int``
and is imported only when it is the one being run, so ``cugrad info`` on a machine without a GPU
never pays for (or breaks on) what ``bench`` or ``compile`` import. ``compute`` is here because it
is the command line's own job: files in, files out.

Errors reach the user as one line, ``cugrad: error: ...``, never a traceback: exit status 1 for a
failure while running, 2 for a command line argparse rejects.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

import cugrad

PROG = "cugrad"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell convention for SIGINT


class CommandError(Exception):
    """A failure to report as one line on stderr (exit status 1); the message says what to fix."""


# --- entry point ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cugrad`` command line and return its exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name; ``sys.argv[1:]`` when omitted.

    Returns
    -------
    int
        0 on success, 1 when the command failed, 2 for a usage error.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(_command_in(argv))
        args = parser.parse_args(argv)
        if args.command is None:
            parser.error("a command is required: demo, compute, info, bench or compile")
        return int(args.run_command(args) or EXIT_OK)
    except SystemExit as exc:  # argparse: --help, --version (0) and usage errors (2)
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except CommandError as exc:
        _report(str(exc))
    except KeyboardInterrupt:
        _report("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (cugrad info | head): nothing left to tell anyone.
        _silence_stdout()
    except MemoryError:
        _report("out of memory (a gradient needs room for the input and one output per axis)")
    except Exception as exc:  # noqa: BLE001 - the promise is one line, never a traceback
        _report(f"unexpected {type(exc).__name__}: {_first_line(exc)}")
    return EXIT_FAILURE


def _report(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _silence_stdout() -> None:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


# --- parser -----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other error of the command.

    With ``intermixed`` set, positionals may follow options (``compute f.npz --key a 0.5``), which
    plain argparse rejects once it has matched an empty ``nargs="*"``.
    """

    intermixed = False
    _parsing_intermixed = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self.intermixed and not self._parsing_intermixed:
            # Older Pythons implement the intermixed parse with parse_known_args itself.
            self._parsing_intermixed = True
            try:
                return self.parse_known_intermixed_args(args, namespace)
            finally:
                self._parsing_intermixed = False
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


@dataclass(frozen=True)
class _Command:
    name: str
    module: str
    summary: str
    epilog: str = ""
    configure: str = "configure_parser"
    run: str = "run"


TOP_EPILOG = """\
examples:
  cugrad demo                            differentiate a known field, compare with numpy.gradient
  cugrad demo --plot demo.png            ... and draw the field, its gradient and the error
  cugrad compute field.npy 0.1 -o g.npz  gradient of a .npy file with spacing 0.1 on every axis
  cugrad info                            versions, GPU, what backend="auto" would choose
  cugrad bench                           quick benchmark against numpy.gradient and peers
  cugrad compile --arch 80,90            compile the CUDA kernels into CuPy's cache ahead of time

Run 'cugrad COMMAND --help' for the options of a command.
Environment: CUGRAD_BACKEND (numpy, cupy or auto) sets the default backend; CUGRAD_NUM_THREADS the
NumPy backend's threads; CUPY_CACHE_DIR where CuPy keeps compiled kernels.
"""

DEMO_EPILOG = """\
examples:
  cugrad demo                     64^3 and 128^3 grids on the best available backend
  cugrad demo --size 32           smaller and faster
  cugrad demo --backend numpy     the NumPy backend even when a GPU is usable
  cugrad demo --plot demo.png     also save a figure (pip install "cugrad[plot]")

The demo exits with status 1 if cugrad and numpy.gradient differ in any bit.
"""

COMPUTE_EPILOG = """\
spacing, as numpy.gradient takes it:
  (none)               unit spacing on every axis
  one number           the same spacing on every differentiated axis
  one per axis         each a number or a coordinates file: a .npy file holding a 1-D array as
                       long as that axis; every SPACING that is not a number is read as a file
                       (write ./2.5 for a file named 2.5)
  --coords FILE ...    coordinates files only, one per differentiated axis, in axis order

output:
  OUTPUT.npz holds one array per differentiated axis, named after the axis index: axis0, axis1, ...
  (negative --axis values are normalized), or with --stack one array named gradient of shape
  (number of axes,) + input shape. ".npz" is appended to OUTPUT if missing, as numpy.savez does.
  The file appears only when complete (written to a temporary file, then renamed).

examples:
  cugrad compute field.npy -o grad.npz                       unit spacing, every axis
  cugrad compute field.npy 0.1 -o grad.npz                   spacing 0.1 on every axis
  cugrad compute field.npy 0.1 y.npy 0.5 -o grad.npz         number, coordinates, number
  cugrad compute field.npy --coords x.npy y.npy z.npy -o grad.npz
  cugrad compute runs.npz --key temp --axis -1 --edge-order 2 -o dtemp.npz
  cugrad compute field.npy --stack -o grad.npz               one (ndim, ...) array "gradient"
"""

INFO_EPILOG = """\
examples:
  cugrad info           human-readable report
  cugrad info --json    the same facts as JSON
"""

COMMANDS: tuple[_Command, ...] = (
    _Command(
        "demo",
        "cugrad._demo",
        "differentiate a built-in 3-D field with a known gradient",
        DEMO_EPILOG,
    ),
    _Command(
        "compute",
        "cugrad._cli",
        "gradient of an array in a .npy or .npz file, saved as .npz",
        COMPUTE_EPILOG,
        configure="configure_compute_parser",
        run="run_compute",
    ),
    _Command("info", "cugrad._info", "versions, GPU, backend choice and kernel cache", INFO_EPILOG),
    _Command("bench", "cugrad._bench", "benchmark cugrad against numpy.gradient and its peers"),
    _Command(
        "compile",
        "cugrad._compile",
        "compile the CUDA kernels ahead of time into CuPy's kernel cache",
    ),
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the ``cugrad`` parser, with the arguments of ``command`` (only that one is imported).

    Parameters
    ----------
    command : str, optional
        The subcommand being run; its module is imported to add its arguments. Others are listed
        with their summary only.

    Returns
    -------
    argparse.ArgumentParser
    """
    parser = _Parser(
        prog=PROG,
        description="cugrad: numpy.gradient, exactly, on GPUs (CuPy) and faster on CPUs.",
        epilog=TOP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {cugrad.__version__}")
    subparsers = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for spec in COMMANDS:
        sub = subparsers.add_parser(
            spec.name,
            help=spec.summary,
            description=spec.summary[0].upper() + spec.summary[1:] + ".",
            epilog=spec.epilog or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if spec.name == command:
            configure, run = _load(spec)
            configure(sub)
            sub.set_defaults(run_command=run)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    # The top-level parser has no option that takes a value, so the first word is the command.
    return next((word for word in argv if not word.startswith("-")), None)


def _load(spec: _Command) -> tuple[Callable[[argparse.ArgumentParser], None], Callable[..., int]]:
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name == spec.module:
            raise CommandError(
                f"'{PROG} {spec.name}' is not available in this installation "
                f"(module {spec.module} is missing)"
            ) from None
        raise CommandError(
            f"'{PROG} {spec.name}' cannot start: it needs the module {exc.name!r}, "
            "which is not installed"
        ) from None
    except ImportError as exc:
        raise CommandError(f"'{PROG} {spec.name}' cannot start: {_first_line(exc)}") from None
    try:
        return getattr(module, spec.configure), getattr(module, spec.run)
    except AttributeError:
        raise CommandError(
            f"'{PROG} {spec.name}' is broken in this installation: {spec.module} lacks "
            f"{spec.configure}() or {spec.run}()"
        ) from None


# --- files ------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary path beside ``final``; on success rename it to ``final``, else delete it.

    Readers of ``final`` never see a half-written file, and a failed or interrupted run leaves
    neither a partial output nor the temporary behind. The rename is atomic because the temporary
    is in the same directory (the same file system).
    """
    final = os.fspath(final)
    directory = os.path.dirname(os.path.abspath(final))
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(final)}.", suffix=".tmp", dir=directory
        )
    except OSError as exc:
        raise CommandError(f"cannot write {final}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
        return array.view(np.ndarray)
    try:
        # Our own handle: np.load leaks the one it opens when the archive is damaged.
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as archive:
            names = list(archive.files)
            key = _choose_key(path, names, key)
            return archive[key]
    except CommandError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails in many ways
        raise CommandError(f"cannot read {path}: {_first_line(exc)}") from None


def _npy_dtype(path: str) -> np.dtype:
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


def _write_npz(path: str, arrays: list[tuple[str, np.ndarray]], progress: _Progress) -> None:
    # np.savez's own layout (stored, zip64 members), written one member at a time so that the
    # progress bar moves with the bytes and nothing but the arrays themselves is held in memory.
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
        written = self._raw.write(data)
        self._progress.advance(memoryview(data).nbytes)
        return written


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


# --- progress ---------------------------------------------------------------------------------


class _Progress:
    """A tqdm bar in bytes (computed, then written), when stderr is a terminal and tqdm is there.

    In a pipe or a log file a bar is noise, so there is none; without tqdm (the ``progress``
    extra) the command runs the same, silently.
    """

    def __init__(self, enabled: bool) -> None:
        self._bar: Any = None
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

    def describe(self, description: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(description)

    def computed(self, nbytes: int) -> None:
        """Count the computed outputs as half the work; writing them is the other half."""
        if self._bar is not None:
            self._bar.total = 2 * nbytes
            self._bar.update(nbytes)

    def advance(self, nbytes: int) -> None:
        if self._bar is not None:
            self._bar.update(nbytes)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


# --- compute ----------------------------------------------------------------------------------


def configure_compute_parser(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``cugrad compute`` to ``parser``."""
    if isinstance(parser, _Parser):
        parser.intermixed = True
    parser.add_argument("input", metavar="INPUT", help="a .npy file, or a .npz file (see --key)")
    parser.add_argument(
        "spacing",
        metavar="SPACING",
        nargs="*",
        help="none, one number for every axis, or one number or coordinates .npy file per axis",
    )
    parser.add_argument(
        "-o", "--output", metavar="OUTPUT.npz", required=True, help="the .npz file to write"
    )
    parser.add_argument(
        "--coords",
        metavar="FILE.npy",
        nargs="+",
        help="coordinates files, one per differentiated axis in axis order (instead of SPACING)",
    )
    parser.add_argument(
        "--axis",
        metavar="AX",
        type=int,
        nargs="+",
        help="axes to differentiate, in this order; negative values count from the end "
        "(default: every axis)",
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


def run_compute(args: argparse.Namespace) -> int:
    """``cugrad compute``: load, differentiate with :func:`cugrad.gradient`, save atomically."""
    if args.spacing and args.coords:
        raise CommandError("give the spacing as SPACING arguments or with --coords, not both")
    output = _output_path(args.output)
    f = _load_input(args.input, args.key)
    axes = _normalize_axes(args.axis, f.ndim)
    tokens = args.coords if args.coords else args.spacing
    spacing = [_read_spacing(token, force_file=bool(args.coords)) for token in tokens]
    _check_spacing(spacing, f.shape, axes)
    axis_arg: Any = (
        None if args.axis is None else (args.axis[0] if len(args.axis) == 1 else tuple(args.axis))
    )

    progress = _Progress(enabled=_stderr_is_terminal())
    try:
        with atomic_path(output) as tmp:
            progress.describe("computing the gradient")
            result = _gradient(f, spacing, axis_arg, args)
            arrays = _named_arrays(result, axes, args.stack)
            progress.computed(sum(array.nbytes for _, array in arrays))
            _write_npz(tmp, arrays, progress)
    finally:
        progress.close()
    names = ", ".join(name for name, _ in arrays) or "no arrays (nothing to differentiate)"
    shape_note = f" of {arrays[0][1].dtype}, shape {arrays[0][1].shape}" if arrays else ""
    print(f"wrote {output}: {names}{shape_note}")
    return EXIT_OK


def _normalize_axes(axis: list[int] | None, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    try:
        return np.lib.array_utils.normalize_axis_tuple(axis, ndim, argname="--axis")
    except ValueError as exc:  # AxisError (a ValueError) or a repeated axis
        raise CommandError(str(exc)) from None


@dataclass(frozen=True)
class _Coordinates:
    path: str
    values: np.ndarray


def _read_spacing(token: str, force_file: bool) -> Any:
    """Read one spacing: a number (an int when it reads as one), else a coordinates file."""
    if not force_file:
        for parse in (int, float):
            try:
                return parse(token)
            except ValueError:
                pass
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


def _gradient(f: np.ndarray, spacing: list[Any], axis: Any, args: argparse.Namespace) -> Any:
    varargs = [_value(item) for item in spacing]
    try:
        # numpy's RuntimeWarnings (divide by zero for repeated coordinates...) are worth telling,
        # but as one line each, like the errors, not as warning-module source excerpts.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = cugrad.gradient(
                f,
                *varargs,
                axis=axis,
                edge_order=args.edge_order,
                stack=args.stack,
                backend=args.backend,
            )
        for message in dict.fromkeys(_first_line(w.message) for w in caught):
            print(f"{PROG}: warning: {message}", file=sys.stderr)
        return result
    except MemoryError:
        raise CommandError(
            f"not enough memory for the gradient of a {f.shape} {f.dtype} array "
            "(it needs one output array of that size per axis)"
        ) from None
    except (
        TypeError,
        ValueError,
        IndexError,
        ZeroDivisionError,
        ArithmeticError,
        RuntimeError,
        ImportError,
    ) as exc:
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
