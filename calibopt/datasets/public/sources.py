"""Where the public data live: the user's installations, the registry files, the cache.

Each :class:`Source` names the files calibopt reads from one public package (R ``survey``'s
``api.rda``, Tax-Calculator's CPS files, the targets in ``policyengine-us-data``), the
SHA-256 of the pinned release of each, and the places to look, in order:

1. an explicit ``path`` from the caller: a folder holding the files, or the registry file
   itself (a ``.deb``, an sdist ``.tar.gz``, a wheel ``.whl``), read without unpacking tools;
2. the user cache (``$CALIBOPT_DATA_DIR``, else the platform's user cache directory from
   ``platformdirs``, else ``$XDG_CACHE_HOME/calibopt`` or ``~/.cache/calibopt``);
3. the user's own installation (an installed R ``survey`` package, an installed ``taxcalc`` or
   ``policyengine_us_data`` found without importing them);
4. registry files lying in the current directory.

Files found outside the cache are checked and copied into it, so the next load is a cache
hit. Nothing is downloaded unless asked: :func:`fetch` (``python -m calibopt.datasets.public
fetch``) runs the registry command that the error message of a failed load prints.

The data themselves never enter the repository (GPL, CC0 or no declared licence): only
checksums and the code that reads them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import CalibrationError
from ...files import atomic_output

__all__ = ["SOURCES", "PublicDataError", "Source", "cache_dir", "fetch", "locate"]


class PublicDataError(CalibrationError, FileNotFoundError):
    """Public data are missing or are not the release calibopt knows (the message says which
    command fetches them)."""


@dataclass(frozen=True)
class Source:
    """One public data package: its files, their checksums, where to find them.

    Attributes
    ----------
    name
        Short name (``"api"``, ``"taxcalc"``, ``"targets"``): the cache folder and the
        argument of ``python -m calibopt.datasets.public fetch``.
    release
        The pinned release whose files the checksums describe.
    files
        ``{file name: SHA-256}``.
    member_dir
        Folder of the files inside the registry archive (and inside an installation).
    archive_glob
        Pattern of the registry file name (``r-cran-survey_*.deb``).
    fetch_commands
        The shell commands that fetch the registry file into the current directory.
    installed
        Returns candidate folders of a user's installation.
    licence
        What the data's licence says (for messages and docs).
    """

    name: str
    release: str
    files: dict[str, str]
    member_dir: str
    archive_glob: str
    fetch_commands: tuple[str, ...]
    installed: Callable[[], list[Path]] = field(compare=False, default=lambda: [])
    licence: str = ""

    def command_text(self) -> str:
        return (
            f"  python -m calibopt.datasets.public fetch {self.name}\n"
            f"or by hand (then pass path= the downloaded file):\n"
            + "\n".join(f"  {c}" for c in self.fetch_commands)
        )


def cache_dir() -> Path:
    """The user cache folder of calibopt's public data."""
    env = os.environ.get("CALIBOPT_DATA_DIR")
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("calibopt")) / "public"
    except ImportError:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "calibopt" / "public"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------- installations
def _r_libraries() -> list[Path]:
    dirs = [
        os.environ.get("R_LIBS", ""),
        os.environ.get("R_LIBS_USER", ""),
        os.environ.get("R_LIBS_SITE", ""),
    ]
    out = [Path(p) for d in dirs for p in d.split(os.pathsep) if p]
    out += [
        Path(p)
        for p in (
            "/usr/local/lib/R/site-library",
            "/usr/lib/R/site-library",
            "/usr/lib/R/library",
            "/usr/local/lib/R/library",
            "/Library/Frameworks/R.framework/Resources/library",
        )
    ]
    out += sorted(Path.home().glob("R/*/*/"))
    return [p / "survey" / "data" for p in out]


def _python_package(module: str, sub: str) -> Callable[[], list[Path]]:
    def find() -> list[Path]:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            return []
        if spec is None or not spec.submodule_search_locations:
            return []
        return [Path(p) / sub for p in spec.submodule_search_locations]

    return find


SOURCES: dict[str, Source] = {
    "api": Source(
        name="api",
        release="R survey 4.1-1 (Debian r-cran-survey 4.1-1-1)",
        files={"api.rda": "cfe4380840d765b7fd4c482a733aaf1c504e9fee60b0b359385915613175bb6a"},
        member_dir="usr/lib/R/site-library/survey/data",
        archive_glob="r-cran-survey_*.deb",
        fetch_commands=("apt-get download r-cran-survey",),
        installed=_r_libraries,
        licence="GPL-2 | GPL-3 (R survey package)",
    ),
    "taxcalc": Source(
        name="taxcalc",
        release="taxcalc 6.8.0",
        files={
            "cps.csv.gz": "492ead49db94fc4bb4109c33a6c9679aa32c41042e715333cc84df1fe49e578d",
            "cps_weights.csv.gz": (
                "b40315dc954bab963536b7310593564b9ca8f50a55d1e41188717c1396bb7991"
            ),
            "growfactors.csv": "80a486faca67f4e82d9160489ca4799b396da33ce1169100290e1eb4182adbf0",
        },
        member_dir="taxcalc-6.8.0/taxcalc",
        archive_glob="taxcalc-*.tar.gz",
        fetch_commands=("pip download --no-deps --no-binary :all: taxcalc==6.8.0",),
        installed=_python_package("taxcalc", ""),
        licence="public domain in the US (Tax-Calculator); CPS file CC0",
    ),
    "targets": Source(
        name="targets",
        release="policyengine-us-data 1.115.4",
        files={
            "agi_state.csv": "065bdb3f8d0ec9faf846a6c1b3ed7e92bf8f41aff3175d3b9929e3d659c1e1e9",
            "age_state.csv": "791d4f40c4dd4af9dc43e797105ba85561e38ac76c5dbb45828bc160867dd918",
            "population_by_state.csv": (
                "c4b17c75de3fb53e19e3d945ecc26de2c60713d9f2fe753f1223721f071ae2b5"
            ),
            "soi_targets.csv": "620fa5c0dbe66fa09b02d5df8b0eeeacabd8b78ac787f557d21c6ea113912bc2",
        },
        member_dir="policyengine_us_data/storage/calibration_targets",
        archive_glob="policyengine_us_data-*.whl",
        fetch_commands=(
            "pip download --no-deps --only-binary=:all: --python-version 3.12 "
            "policyengine-us-data==1.115.4",
        ),
        installed=_python_package("policyengine_us_data", "storage/calibration_targets"),
        licence="none declared (policyengine-us-data); targets from IRS SOI and Census",
    ),
}


# ---------------------------------------------------------------------- archives
def _ar_members(path: Path) -> dict[str, bytes]:
    """The members of a Unix ``ar`` archive (a ``.deb``)."""
    data = path.read_bytes()
    if data[:8] != b"!<arch>\n":
        raise PublicDataError(f"{path} is not a Debian package (no ar header).")
    pos, out = 8, {}
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        out[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    return out


def _read_archive(source: Source, archive: Path) -> dict[str, bytes]:
    """The source's files from a registry file (deb, sdist, wheel), by base name."""
    wanted = {f"{source.member_dir}/{f}": f for f in source.files}
    out: dict[str, bytes] = {}
    name = archive.name
    if name.endswith(".deb"):
        members = _ar_members(archive)
        payload = next((v for k, v in members.items() if k.startswith("data.tar")), None)
        if payload is None:
            raise PublicDataError(f"{archive} has no data.tar member.")
        with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
            for m in tar.getmembers():
                key = m.name.lstrip("./")
                if key in wanted and m.isfile():
                    out[wanted[key]] = tar.extractfile(m).read()  # type: ignore[union-attr]
    elif name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(archive) as tar:
            for m in tar.getmembers():
                if m.name in wanted and m.isfile():
                    out[wanted[m.name]] = tar.extractfile(m).read()  # type: ignore[union-attr]
    elif name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if info.filename in wanted:
                    out[wanted[info.filename]] = z.read(info)
    else:
        raise PublicDataError(f"{archive}: not a .deb, .tar.gz or .whl file.")
    missing = sorted(set(source.files) - set(out))
    if missing:
        raise PublicDataError(
            f"{archive} lacks {missing} under {source.member_dir}/; is it {source.release}?"
        )
    return out


# ---------------------------------------------------------------------- locating
def _cache_folder(source: Source) -> Path:
    return cache_dir() / source.name


def _checked(source: Source, name: str, content: bytes, origin: str) -> bytes:
    digest = hashlib.sha256(content).hexdigest()
    if digest != source.files[name]:
        raise PublicDataError(
            f"{name} from {origin} has SHA-256 {digest[:16]}..., not that of {source.release} "
            f"({source.files[name][:16]}...). calibopt's loaders and tests are pinned to that "
            f"release; fetch it with\n{source.command_text()}"
        )
    return content


def _store(source: Source, contents: dict[str, bytes]) -> Path:
    folder = _cache_folder(source)
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in contents.items():
        with atomic_output(folder / name, overwrite=True) as tmp:
            Path(tmp).write_bytes(content)
    return folder


def _from_folder(source: Source, folder: Path) -> dict[str, bytes] | None:
    if not all((folder / f).is_file() for f in source.files):
        return None
    return {f: _checked(source, f, (folder / f).read_bytes(), str(folder)) for f in source.files}


def _cached(source: Source) -> Path | None:
    folder = _cache_folder(source)
    if not all((folder / f).is_file() for f in source.files):
        return None
    for f in source.files:
        if sha256(folder / f) != source.files[f]:
            raise PublicDataError(
                f"the cached {folder / f} fails its checksum (a partial or altered copy); "
                f"delete {folder} and fetch again with\n{source.command_text()}"
            )
    return folder


def locate(name: str, path: str | os.PathLike | None = None) -> Path:
    """The cache folder holding a source's checked files, filling it from ``path``, the
    user's installation or a registry file in the current directory.

    Raises
    ------
    PublicDataError
        Nothing found (the message gives the fetch command) or a file with another checksum.
    """
    source = SOURCES[name]
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            contents = _from_folder(source, p) or _from_folder(source, p / source.member_dir)
            if contents is None:
                raise PublicDataError(
                    f"{p} holds none of {sorted(source.files)} (nor {source.member_dir}/ ...)."
                )
        elif p.is_file():
            contents = {
                f: _checked(source, f, c, str(p)) for f, c in _read_archive(source, p).items()
            }
        else:
            raise PublicDataError(f"path {p} does not exist.")
        return _store(source, contents)
    hit = _cached(source)
    if hit is not None:
        return hit
    for folder in source.installed():
        contents = _from_folder(source, folder)
        if contents is not None:
            return _store(source, contents)
    archives = sorted(Path.cwd().glob(source.archive_glob))
    for archive in archives:
        contents = _read_archive(source, archive)
        return _store(
            source, {f: _checked(source, f, c, str(archive)) for f, c in contents.items()}
        )
    raise PublicDataError(
        f"the {source.name!r} data ({', '.join(source.files)} of {source.release}; "
        f"licence: {source.licence}) are not in the cache {_cache_folder(source)}, not in an "
        f"installation, and no {source.archive_glob} lies in {Path.cwd()}. Fetch them with\n"
        f"{source.command_text()}"
    )


def fetch(names: Sequence[str] = tuple(SOURCES), *, quiet: bool = False) -> dict[str, Path]:
    """Download the registry files of some sources (pip / apt-get) and fill the cache.

    Sources already cached are left alone. Returns ``{name: cache folder}``.
    """
    out = {}
    for name in names:
        if name not in SOURCES:
            raise PublicDataError(f"unknown source {name!r}; known: {sorted(SOURCES)}.")
        source = SOURCES[name]
        try:
            out[name] = locate(name)
        except PublicDataError:
            pass
        else:
            if not quiet:
                print(f"{name}: {source.release} already in {out[name]}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            for command in source.fetch_commands:
                argv = command.split()
                if argv[0] == "pip":
                    argv = [sys.executable, "-m", "pip", *argv[1:], "-d", tmp]
                elif shutil.which(argv[0]) is None:
                    raise PublicDataError(
                        f"cannot fetch {name!r}: {argv[0]} is not available here; run "
                        f"{command!r} on a Debian-like system and pass path= the file."
                    )
                done = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise PublicDataError(
                        f"{command!r} failed ({done.returncode}): {done.stderr.strip()[-800:]}"
                    )
            archives = sorted(Path(tmp).glob(source.archive_glob))
            if not archives:
                raise PublicDataError(f"{source.fetch_commands} left no {source.archive_glob}.")
            out[name] = locate(name, archives[-1])
        if not quiet:
            print(f"{name}: {source.release} cached in {out[name]}")
    return out
