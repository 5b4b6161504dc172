"""The error boundary of every script: an error a user can act on prints one or two lines — what went
wrong, which file, what to do — and the script exits non-zero (130 for Ctrl-C); `--debug` (or
`LORASAE_DEBUG=1`) shows the full traceback instead.

A leaf module (imports nothing from lorasae), so every other module can derive its errors from
`LorasaeError`. Scripts wrap their entry point:

    @main_guard
    def main(argv: list[str] | None = None) -> None:
        run(parse(Config, argv))

    if __name__ == "__main__":
        sys.exit(main())
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
from collections.abc import Callable
from typing import Any

DEBUG_FLAG = "--debug"
DEBUG_ENV = "LORASAE_DEBUG"
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's code for a bad command line
EXIT_INTERRUPTED = 130  # the shell's convention for SIGINT
HINT = f"(rerun with {DEBUG_FLAG} or {DEBUG_ENV}=1 for the traceback)"


class LorasaeError(Exception):
    """Base of the project's own errors: the message already says what went wrong and what to do."""


class PreflightError(LorasaeError, ValueError):
    """A check before any data loads or training starts failed (unwritable folder, NaN weights, shapes,
    too little data)."""


class OutputExistsError(LorasaeError, FileExistsError):
    """A run would replace an existing output made from different inputs (pass --overwrite or --resume)."""


class CorruptFileError(LorasaeError, ValueError):
    """A file the run reads is truncated or not in the expected format; the message names it."""


class UsageError(LorasaeError, ValueError):
    """A bad flag or config-file value: one line naming the flag (and the config file it came from),
    printed without the usage block or the traceback hint; exit code 2 (argparse's)."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C, after the run saved what it could; the message says how to continue."""


def debug_requested(argv: list[str] | None = None) -> bool:
    flag = DEBUG_FLAG in (sys.argv[1:] if argv is None else argv)
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _network_error(err: BaseException) -> bool:
    """requests / httpx / urllib3 / openai connection and timeout errors, recognised by class name so
    that none of those packages must be importable here."""
    names = {cls.__name__ for cls in type(err).__mro__}
    return bool(
        names & {"ConnectionError", "APIConnectionError", "ConnectError", "Timeout", "TimeoutError"}
    ) or any("Connection" in name or "Timeout" in name for name in names)


def describe(err: BaseException) -> str:
    """The message the boundary prints for `err` (without the traceback)."""
    if isinstance(err, LorasaeError):
        return str(err)
    if isinstance(err, PermissionError):
        where = err.filename or "a file"
        return f"permission denied: {where}. Make it writable (chmod u+w) or point LORASAE_ROOT elsewhere."
    if _network_error(err):
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return (
            f"could not reach a network service ({type(err).__name__}: {first}). Check the connection, "
            "the URL and the API key, or run offline (HF_HUB_OFFLINE=1, a local judge/model)."
        )
    if isinstance(err, FileNotFoundError) and err.filename:
        return f"{err.filename} does not exist ({err.strerror or err}). Check the path."
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror or err}. Check the path, the free disk space and permissions."
    if isinstance(err, json.JSONDecodeError):  # a reader that did not name its file (see lorasae.core.atomic)
        return f"a JSON file is corrupt ({err}); rerun with {DEBUG_FLAG} to see which file reads it."
    if type(err).__name__ == "SafetensorError":  # a loader that did not name its file
        return f"a safetensors file is corrupt or truncated ({err}); rerun with {DEBUG_FLAG} to see which."
    if isinstance(err, UnicodeDecodeError):
        return f"a file is not UTF-8 text (byte {err.start}: {err.reason}); rerun with {DEBUG_FLAG} to see which."
    text = str(err).strip()
    if isinstance(err, ValueError | FileNotFoundError | LookupError) and text:
        return text  # our own modules raise these with messages written for the user
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


_CONFIG_ORIGINS: dict[str, str] = {}  # setting → "file, line N" of the config file that set it


def note_config_origins(origins: dict[str, str]) -> None:
    """Remember which settings the last parsed command line took from a config file (`lorasae.core.cli`),
    so that an error about one of them later in the run also names the file and line to fix."""
    _CONFIG_ORIGINS.clear()
    _CONFIG_ORIGINS.update(origins)


def config_origin(message: str) -> str:
    """` (set in <file>, line N: fix it there by hand)` when `message` is about a setting that came from
    a config file, else ``."""
    for key, where in _CONFIG_ORIGINS.items():
        # `--key` anywhere; a bare name only when it cannot be an ordinary word (`lora_dropout`, not `model`)
        bare = "_" in key and re.search(rf"(?<![\w.-]){re.escape(key)}(?!\w)", message)
        if bare or re.search(rf"--{re.escape(key)}(?!\w)", message):
            return f" ({key} was set in {where}: fix it there by hand)"
    return ""


def report(err: BaseException) -> int:
    """Print `err`'s message to stderr; the exit code for it."""
    if isinstance(err, KeyboardInterrupt):
        print(str(err) or "Interrupted (Ctrl-C); nothing more was written.", file=sys.stderr)
        return EXIT_INTERRUPTED
    message = describe(err)
    print(f"error: {message}{config_origin(message)}", file=sys.stderr)
    if isinstance(err, UsageError):  # a traceback would only show the parser
        return EXIT_USAGE
    print(HINT, file=sys.stderr)
    return EXIT_ERROR


_ON_SUCCESS: list[Callable[[], Any]] = []
_ON_FAILURE: list[Callable[[], Any]] = []


def at_command_end(on_success: Callable[[], Any], on_failure: Callable[[], Any]) -> None:
    """Register what the boundary does when a command ends: `on_success` after it finished, `on_failure`
    after it failed or was interrupted (e.g. `lorasae.core.records` writes or drops the records it deferred, so
    a command that fails changes no output)."""
    _ON_SUCCESS.append(on_success)
    _ON_FAILURE.append(on_failure)


def _finish(hooks: list[Callable[[], Any]]) -> None:
    for hook in hooks:
        hook()


def run_guarded(entry: Callable[[list[str]], Any], argv: list[str] | None = None) -> int:
    """Call `entry(argv)` (argv without `--debug`) and map what escapes to an exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        entry(argv)
    except SystemExit as exit_:  # argparse: it printed usage and the error already
        code = exit_.code
        code = code if isinstance(code, int) else (0 if code is None else EXIT_ERROR)
        _finish(_ON_SUCCESS if code == 0 else _ON_FAILURE)
        return code
    except (Exception, KeyboardInterrupt) as err:
        _finish(_ON_FAILURE)
        if debug:
            raise
        return report(err)
    try:
        _finish(_ON_SUCCESS)
    except (Exception, KeyboardInterrupt) as err:
        if debug:
            raise
        return report(err)
    return 0


NOTEBOOK_ERRORS = (LorasaeError, OSError, ValueError, LookupError)
"""What a notebook cell shows as one line (the errors `describe` words for a user; a bug's TypeError or
AttributeError keeps its traceback)."""


def install_notebook_boundary(shell: Any = None) -> bool:
    """The error boundary of a notebook (call it in the first cell): an error a user can act on shows as
    one line — what went wrong, which file, what to do — instead of a traceback; with LORASAE_DEBUG=1
    set in the kernel the traceback shows. Returns whether an IPython shell was found."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False

    def one_line(self: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None):
        if debug_requested([]):
            stb = self.InteractiveTB.structured_traceback(etype, value, tb, tb_offset=tb_offset)
        else:
            stb = [f"error: {describe(value)} (set {DEBUG_ENV}=1 in the kernel for the traceback)"]
        self._showtraceback(etype, value, stb)
        return stb

    shell.set_custom_exc(NOTEBOOK_ERRORS, one_line)
    return True


def main_guard(entry: Callable[[list[str]], Any]) -> Callable[[list[str] | None], int]:
    """Decorator: `entry(argv)` behind the boundary; the wrapped function returns the exit code."""

    @functools.wraps(entry)
    def guarded(argv: list[str] | None = None) -> int:
        return run_guarded(entry, argv)

    return guarded
