"""The ``cugrad`` command line: demo, compute, info, bench, compile and selftest.

Each subcommand lives in a module exposing ``configure_parser(parser)`` and ``run(args) -> int``
and is imported only when it is the one being run, so ``cugrad info`` on a machine without a GPU
never pays for (or breaks on) what ``bench`` or ``compile`` import. This module holds what every
command shares: the parser, the one-line error format, and atomic file writing.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NoReturn

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
            parser.error("a command is required: " + ", ".join(c.name for c in COMMANDS))
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
    epilog_attr: str = ""  # the epilog is this attribute of the module (loaded with it)


TOP_EPILOG = """\
examples:
  cugrad demo                            differentiate a known field, compare with numpy.gradient
  cugrad demo --plot demo.png            ... and draw the field, its gradient and the error
  cugrad compute field.npy 0.1 -o g.npz  gradient of a .npy file with spacing 0.1 on every axis
  cugrad info                            versions, GPU, what backend="auto" would choose
  cugrad bench                           quick benchmark against numpy.gradient and peers
  cugrad compile --arch 80,90            compile the CUDA kernels into CuPy's cache ahead of time
  cugrad selftest --json report.json     check the installation end to end on this GPU

Run 'cugrad COMMAND --help' for the options of a command.
Environment: CUGRAD_BACKEND (numpy, cupy or auto) sets the default backend; CUGRAD_NUM_THREADS the
NumPy backend's threads; CUPY_CACHE_DIR where CuPy keeps compiled kernels.
"""

DEMO_EPILOG = """\
examples:
  cugrad demo                     64^3 and 128^3 grids on the best available backend
  cugrad demo --size 32           smaller and faster
  cugrad demo --backend numpy     the NumPy backend even when a GPU is usable
  cugrad demo --plot demo.png     also save a figure (needs matplotlib)

The demo exits with status 1 if cugrad and numpy.gradient differ in any bit.
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
        "cugrad._compute",
        "gradient of an array in a .npy or .npz file, saved as .npz",
        epilog_attr="EPILOG",
    ),
    _Command("info", "cugrad._info", "versions, GPU, backend choice and kernel cache", INFO_EPILOG),
    _Command("bench", "cugrad._bench", "benchmark cugrad against numpy.gradient and its peers"),
    _Command(
        "compile",
        "cugrad._compile",
        "compile the CUDA kernels ahead of time into CuPy's kernel cache",
    ),
    _Command(
        "selftest",
        "cugrad._cli",
        "check this installation end to end on this machine's GPU",
        configure="configure_selftest_parser",
        run="run_selftest",
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
            if spec.epilog_attr:
                sub.epilog = getattr(importlib.import_module(spec.module), spec.epilog_attr)
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
def atomic_path(final: str | os.PathLike[str], replace: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``final``; on success rename it to ``final``, else delete it.

    Readers of ``final`` never see a half-written file, and a failed or interrupted run leaves
    neither a partial output nor the temporary behind. The rename is atomic because the temporary
    is in the same directory (the same file system). With ``replace=False`` a file that appeared
    at ``final`` meanwhile is kept, and the write fails instead.
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
        if replace:
            os.replace(tmp, final)
        else:
            _publish_new(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _publish_new(tmp: str, final: str) -> None:
    # A hard link creates ``final`` only if nothing is there, atomically; where the file system
    # has no hard links, check and rename (a race is then possible, a clobber on purpose is not).
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise CommandError(
            f"{final} appeared while this command ran; it was left as it is (add --force to "
            "replace it)"
        ) from None
    except OSError:
        if os.path.lexists(final):
            raise CommandError(f"{final} exists: add --force to replace it") from None
        os.replace(tmp, final)
    else:
        os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- selftest ---------------------------------------------------------------------------------


def configure_selftest_parser(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``cugrad selftest`` to ``parser``."""
    parser.add_argument(
        "--json",
        metavar="PATH",
        default=None,
        help="also write the results as JSON to PATH (its directory must exist)",
    )


def run_selftest(args: argparse.Namespace) -> int:
    """``cugrad selftest``: run :func:`cugrad._selftest.run` (imported only now)."""
    if args.json is not None:
        if os.path.isdir(args.json):
            raise CommandError(f"--json {args.json} is a directory; give a file name")
        directory = os.path.dirname(os.path.abspath(args.json))
        if not os.path.isdir(directory):
            raise CommandError(f"cannot write {args.json}: directory {directory} does not exist")
    try:
        selftest = importlib.import_module("cugrad._selftest")
    except ModuleNotFoundError as exc:
        if exc.name == "cugrad._selftest":
            raise CommandError(
                f"'{PROG} selftest' is not available in this installation "
                "(module cugrad._selftest is missing)"
            ) from None
        raise
    return int(selftest.run(args.json))
