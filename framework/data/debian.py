"""Files out of Debian packages without root: `apt-get download` and `dpkg -x`.

Debian's archive is one of the package registries these machines reach, and some
packages ship real data (Fashion-MNIST's IDX files, R's `modeldata` data frames). A
package is downloaded into a temporary folder (not installed), unpacked there, and the
wanted files are copied into a destination folder that appears whole or not at all.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from typing import Sequence

from absl import logging

from framework.errors import ConfigError


def missing_files(directory: str, names: Sequence[str]) -> list[str]:
    """The files of `names` that `directory` lacks."""
    return [n for n in names if not os.path.isfile(os.path.join(directory, n))]


def _tool(name: str, package: str, advice: str) -> str:
    path = shutil.which(name)
    if not path:
        raise ConfigError(f"cannot fetch Debian package {package} without {name}; {advice}")
    return path


def download(package: str, workdir: str, advice: str) -> str:
    """`apt-get download package` into `workdir`; returns the .deb's path."""
    apt = _tool("apt-get", package, advice)
    logging.info("fetching %s with apt-get download", package)
    done = subprocess.run([apt, "download", package], cwd=workdir, capture_output=True, text=True)
    debs = glob.glob(os.path.join(workdir, "*.deb"))
    if done.returncode or len(debs) != 1:
        said = (done.stderr.strip().splitlines() or ["no .deb file"])[-1]
        raise ConfigError(f"`apt-get download {package}` failed ({said}); {advice}")
    return debs[0]


def version(deb: str) -> str:
    """The package version a .deb file holds ('' if dpkg-deb cannot tell)."""
    dpkg_deb = shutil.which("dpkg-deb")
    if not dpkg_deb:
        return ""
    done = subprocess.run([dpkg_deb, "-f", deb, "Version"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def extract(
    deb: str, inner_dir: str, names: Sequence[str], dest: str, advice: str, package: str = ""
) -> str:
    """Copies `names` from `inner_dir` (a path inside the package, e.g. `usr/share/x`) of
    the .deb file `deb` into `dest`, which is replaced whole; returns `dest`."""
    package = package or os.path.basename(deb)
    dpkg = _tool("dpkg", package, advice)
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "root")
        done = subprocess.run([dpkg, "-x", deb, root], capture_output=True, text=True)
        source = os.path.join(root, inner_dir)
        missing = missing_files(source, names)
        if done.returncode or missing:
            said = f"no {', '.join(missing)}" if missing else done.stderr.strip()[-200:]
            raise ConfigError(f"{os.path.basename(deb)}: `dpkg -x` gave {said}; {advice}")
        staging = f"{dest}.incomplete.{os.getpid()}"
        os.makedirs(staging)
        for name in names:
            shutil.copyfile(os.path.join(source, name), os.path.join(staging, name))
        if os.path.isdir(dest):  # a partial copy from an older run
            shutil.rmtree(dest)
        os.replace(staging, dest)
    return dest


def fetch(package: str, inner_dir: str, names: Sequence[str], dest: str, advice: str) -> str:
    """Downloads Debian `package` and copies `names` of its `inner_dir` into `dest`
    (made whole or not at all); returns `dest`. `advice` ends each one-line error."""
    with tempfile.TemporaryDirectory() as tmp:
        deb = download(package, tmp, advice)
        return extract(deb, inner_dir, names, dest, advice, package)
