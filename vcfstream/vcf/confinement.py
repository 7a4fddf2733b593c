"""Which inputs a flow run may read: the input roots, URL schemes, and the CLI owner's exemption.

Everything a run reads because a parameter named it (the VCF/BCF files, a cohort's manifest and
folder, the reference FASTA) is checked here before it is opened. The roots are ``<home>/incoming``
(the inbox) plus ``VCFSTREAM_INPUT_ROOTS`` (absolute folders; a relative one is a configuration
error); unset, the inbox alone, never "anything". A path is resolved once (symlinks followed),
the resolved path must lie under a resolved root, and that resolved path is what is read.

A path with a URL scheme (``https:``, ``s3:``, ``data:``, anything htslib would fetch or decode)
is refused unless ``VCFSTREAM_INPUT_URL_SCHEMES`` lists its scheme; only the reference FASTA is
ever read from a URL (by htslib), VCF/BCF files and manifests are local files.

The one exemption is the owner's: ``vcfstream ingest`` runs the flow in its own process inside
``owner_run()``, and there any local file its user can read is accepted. A run started by a
deployment (the UI, the API, a schedule) runs in a worker's process, which never enters
``owner_run``: no parameter, setting or block turns it on.

Errors name the path (or a manifest and line number) and a rule, never what a file holds.

Example:
    >>> policy = InputPolicy(roots=(Path("/data/incoming"),))
    >>> try:
    ...     policy.check_file("/etc/passwd")
    ... except ConfinementError as error:
    ...     print(error)
    /etc/passwd: [input.outside_roots] outside the input roots (/data/incoming); see VCFSTREAM_INPUT_ROOTS
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from vcfstream.errors import ConfigurationError, InputError

if TYPE_CHECKING:
    from vcfstream.settings import Settings

INBOX = "incoming"  # under the home: the root every flow run may read (and the nightly cohort scans)
# htslib takes "scheme:" (two or more of these characters before the colon) as a URL or a handler.
_URL = re.compile(r"([A-Za-z0-9+.-]{2,}):")
_BGZF_MAGIC = b"\x1f\x8b\x08\x04"

_owner: ContextVar[bool] = ContextVar("vcfstream_owner_run", default=False)


class ConfinementError(InputError):
    """An input the run may not read, or that is not what it should be; ``rule`` says which
    check refused it."""

    def __init__(self, path: str, rule: str, message: str) -> None:
        super().__init__(path, f"[{rule}] {message}")
        self.rule = rule


@contextmanager
def owner_run() -> Iterator[None]:
    """Within: the CLI run by its user, who may ingest any local file they can read.

    Only ``vcfstream``'s command line enters it, around the flow it runs in its own process
    (tasks in threads inherit it); it is not a parameter, setting or environment variable.
    """
    token = _owner.set(True)
    try:
        yield
    finally:
        _owner.reset(token)


@dataclass(frozen=True, slots=True)
class InputPolicy:
    """The folders and URL schemes a run may read; ``owner``: any local file (``owner_run``)."""

    roots: tuple[Path, ...]
    url_schemes: frozenset[str] = frozenset()
    owner: bool = False

    def __post_init__(self) -> None:
        for root in self.roots:
            if not root.expanduser().is_absolute():
                raise ConfigurationError(f"VCFSTREAM_INPUT_ROOTS: {str(root)!r} is a relative folder: give absolute "
                                         f"folders (a relative one would mean another folder for each process)")
        object.__setattr__(self, "roots", tuple(root.expanduser().resolve() for root in self.roots))
        object.__setattr__(self, "url_schemes", frozenset(s.lower() for s in self.url_schemes))

    # -- single paths ------------------------------------------------------------------------

    def check_file(self, path: str, what: str = "input") -> Path:
        """The resolved regular file ``path`` names, if the run may read it; else ``ConfinementError``."""
        if url_scheme(path) is not None:
            raise self._url_refused(path, what)
        resolved = self._inside(path, what)
        try:
            info = resolved.stat()
        except FileNotFoundError:
            raise ConfinementError(path, "input.missing", "no such file") from None
        except OSError as exc:
            raise ConfinementError(path, "input.unreadable", f"cannot be read ({exc.strerror})") from None
        if stat.S_ISDIR(info.st_mode):
            raise ConfinementError(path, "input.directory", f"is a directory, not a {_KIND[what]}")
        if not stat.S_ISREG(info.st_mode):
            raise ConfinementError(path, "input.not_a_file",
                                   f"not a regular file (a device, pipe or socket), not a {_KIND[what]}")
        if not os.access(resolved, os.R_OK):
            raise ConfinementError(path, "input.unreadable", "not readable")
        return resolved

    @contextmanager
    def open_file(self, path: str, what: str = "input") -> Iterator[BinaryIO]:
        """``check_file``, then the file opened and checked again as opened: a folder on its way
        swapped for a link in between is refused (Linux: the opened file's /proc path)."""
        resolved = self.check_file(path, what)
        # O_NONBLOCK: a pipe put in its place answers at once instead of blocking the run
        with open(resolved, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK)) as handle:
            opened = Path(f"/proc/self/fd/{handle.fileno()}")
            real = Path(os.readlink(opened)) if opened.is_symlink() else resolved
            if not (self.inside(real) and stat.S_ISREG(os.fstat(handle.fileno()).st_mode)):
                raise ConfinementError(path, "input.changed", "replaced while it was opened")
            yield handle

    def check_directory(self, path: str) -> Path:
        """The resolved folder ``path`` names, if the run may list it; else ``ConfinementError``."""
        if url_scheme(path) is not None:
            raise self._url_refused(path, "directory")
        resolved = self._inside(path, "directory")
        if not resolved.is_dir():
            raise ConfinementError(path, "input.not_a_directory", "not a directory")
        return resolved

    def check_reference(self, reference: str) -> str:
        """The reference FASTA as htslib should open it: an allowed URL as it is, else the resolved
        local file, which must have its faidx index (``.fai``, and ``.gzi`` when BGZF-compressed)
        beside it, so htslib never writes one there."""
        scheme = url_scheme(reference)
        if scheme is not None and scheme in self.url_schemes:
            return reference  # htslib reads it, and its index from <url>.fai
        if scheme is not None:
            raise self._url_refused(reference, "reference")
        resolved = self.check_file(reference, "reference")
        with open(resolved, "rb") as fh:
            compressed = fh.read(4) == _BGZF_MAGIC
        suffixes = (".fai", ".gzi") if compressed else (".fai",)
        for suffix in suffixes:
            if not Path(f"{resolved}{suffix}").exists():
                raise ConfinementError(reference, "reference.index",
                                       f"no {suffix} index beside the FASTA: index it first (samtools faidx); "
                                       f"vcfstream never writes one")
        self.check_indexes(reference, resolved, suffixes)
        return str(resolved)

    def check_indexes(self, path: str, resolved: Path, suffixes: tuple[str, ...]) -> None:
        """Indexes htslib opens beside ``resolved`` by name (``.tbi``, ``.csi``, ``.fai``) must
        resolve inside the roots too: a link there to a file elsewhere refuses the input."""
        for suffix in suffixes:
            index = Path(f"{resolved}{suffix}")
            if index.exists() and not self.inside(index.resolve()):
                raise ConfinementError(path, "input.outside_roots", f"its index ({index.name}) is a link to a "
                                       f"file outside the input roots ({self.describe_roots()})")

    def inside(self, resolved: Path) -> bool:
        """Whether the resolved path lies under a root (always, for the owner)."""
        return self.owner or any(resolved.is_relative_to(root) for root in self.roots)

    def describe_roots(self) -> str:
        return ", ".join(str(root) for root in self.roots) or "none"

    # -- helpers -----------------------------------------------------------------------------

    def _inside(self, path: str, what: str) -> Path:
        resolved = Path(path).expanduser().resolve()
        if not self.inside(resolved):
            article = "" if what == "input" else f"the {what} is "
            raise ConfinementError(path, "input.outside_roots", f"{article}outside the input roots "
                                   f"({self.describe_roots()}); see VCFSTREAM_INPUT_ROOTS")
        return resolved

    def _url_refused(self, path: str, what: str) -> ConfinementError:
        scheme = url_scheme(path)
        if scheme in self.url_schemes:
            return ConfinementError(_shown(path), "input.url", f"a URL ({scheme}:): a {_KIND[what]} is read from a "
                                    f"local path only (only the reference FASTA may be a URL)")
        allowed = ", ".join(sorted(self.url_schemes)) or "none"
        return ConfinementError(_shown(path), "input.url", f"a URL ({scheme}:) is refused; allowed schemes: {allowed} "
                                f"(VCFSTREAM_INPUT_URL_SCHEMES); a local file so named: write ./ before it")


_KIND = {"input": "VCF/BCF file", "reference": "FASTA file", "manifest": "manifest", "directory": "folder"}


UNCONFINED = InputPolicy(roots=(), owner=True)  # any local file: tests, benchmarks, paths checked before


def url_scheme(path: str) -> str | None:
    """The scheme of a path htslib would treat as a URL (``https``, ``s3``, ``data``, ...), else None."""
    match = _URL.match(path)
    return match[1].lower() if match else None


def _shown(path: str) -> str:
    """A URL as an error shows it: without a user or password it may carry."""
    scheme, sep, rest = path.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return path


def inbox(settings: Settings) -> Path:
    """``<home>/incoming``, the inbox: the folder every run may read and the nightly cohort scans;
    made (0700) when the home exists."""
    folder = settings.home_dir / INBOX
    if settings.home_dir.is_dir() and not folder.exists():
        try:
            folder.mkdir(mode=0o700)
        except OSError:  # e.g. a read-only home: it stays a root that holds nothing
            pass
    return folder


def input_policy(settings: Settings) -> InputPolicy:
    """The policy of the current run: the inbox and ``ingest.input_roots``; the owner's inside ``owner_run``."""
    return InputPolicy(roots=(inbox(settings), *settings.ingest.input_roots),
                       url_schemes=frozenset(settings.ingest.input_url_schemes), owner=_owner.get())
