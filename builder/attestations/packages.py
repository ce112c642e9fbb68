"""The software packages a root filesystem holds, read from the package managers' own records.

- Debian: ``var/lib/dpkg/status`` (and ``var/lib/dpkg/status.d/*`` as distroless images keep
  it), installed entries only;
- Alpine: ``lib/apk/db/installed``;
- Python: ``*.dist-info/METADATA`` (and ``*.egg-info/PKG-INFO``) below ``site-packages`` or
  ``dist-packages``;
- npm: ``node_modules/NAME/package.json`` and ``node_modules/@SCOPE/NAME/package.json``.

Nothing is executed and nothing outside the root is read: the walk does not follow symlinks
and every file is opened below the root without following a final symlink.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from urllib.parse import quote

__all__ = ["Package", "scan"]

MAX_RECORD = 64 << 20  # a status database larger than this is not read
_SKIP_DIRS = {"proc", "sys", "dev"}


@dataclass(frozen=True)
class Package:
    """One installed package: its ecosystem (``deb``, ``apk``, ``pypi``, ``npm``), name,
    version, where it was found (a path inside the image) and what else its record tells."""

    type: str
    name: str
    version: str
    location: str
    license: str | None = None
    supplier: str | None = None
    architecture: str | None = None
    source: str | None = None
    homepage: str | None = None
    namespace: str | None = None

    @property
    def purl(self) -> str:
        """The package URL (purl) of the package."""
        name = quote(self.name, safe="")
        version = quote(self.version, safe="")
        if self.type == "deb":
            qualifiers = [f"arch={self.architecture}"] if self.architecture else []
            if self.source and self.source != self.name:
                qualifiers.append(f"upstream={quote(self.source, safe='')}")
            tail = ("?" + "&".join(qualifiers)) if qualifiers else ""
            return f"pkg:deb/{self.namespace or 'debian'}/{name}@{version}{tail}"
        if self.type == "apk":
            tail = f"?arch={self.architecture}" if self.architecture else ""
            return f"pkg:apk/{self.namespace or 'alpine'}/{name}@{version}{tail}"
        if self.type == "pypi":
            normal = re.sub(r"[-_.]+", "-", self.name).lower()
            return f"pkg:pypi/{quote(normal, safe='')}@{version}"
        scope, slash, base = self.name.partition("/")
        if slash and scope.startswith("@"):
            return f"pkg:npm/{quote(scope, safe='')}/{quote(base, safe='')}@{version}"
        return f"pkg:npm/{name}@{version}"


def _read(root: Path, rel: str) -> str | None:
    """The text of ``root/rel`` when it is a regular file (a final symlink is not followed)."""
    try:
        fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = f.read(MAX_RECORD + 1)
    if len(data) > MAX_RECORD:
        return None
    return data.decode("utf-8", errors="replace")


def _has_no_symlink(root: Path, rel: str, *, last: bool = False) -> bool:
    """Whether no directory on the way from ``root`` to ``rel`` (nor ``rel`` itself, with
    ``last``) is a symlink."""
    parts = Path(rel).parts
    current = root
    for part in parts if last else parts[:-1]:
        current = current / part
        if current.is_symlink():
            return False
    return True


def _stanzas(text: str) -> Iterator[dict[str, str]]:
    """The paragraphs of a deb822 file (dpkg status) as field → value."""
    fields: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif line[0] in " \t":
            if last is not None:
                fields[last] += "\n" + line.strip()
        else:
            key, _, value = line.partition(":")
            last = key.strip().lower()
            fields[last] = value.strip()
    if fields:
        yield fields


def _os_id(root: Path) -> str | None:
    """``ID`` of ``etc/os-release`` (or ``usr/lib/os-release``)."""
    for rel in ("etc/os-release", "usr/lib/os-release"):
        if not _has_no_symlink(root, rel):
            continue
        text = _read(root, rel)
        if text:
            for line in text.splitlines():
                if line.startswith("ID="):
                    return line[3:].strip().strip('"\'') or None
    return None


def _dpkg(root: Path, namespace: str | None) -> Iterator[Package]:
    files = ["var/lib/dpkg/status"]
    status_d = "var/lib/dpkg/status.d"
    if _has_no_symlink(root, status_d, last=True) and (root / status_d).is_dir():
        files += [f"{status_d}/{n}" for n in sorted(os.listdir(root / status_d))
                  if not n.endswith(".md5sums")]
    for rel in files:
        if not _has_no_symlink(root, rel):
            continue
        text = _read(root, rel)
        if not text:
            continue
        for fields in _stanzas(text):
            status = fields.get("status", "install ok installed")
            if not status.endswith(" installed") or "package" not in fields:
                continue
            source = fields.get("source", "").split(" ")[0] or None
            yield Package("deb", fields["package"], fields.get("version", ""), "/" + rel,
                          supplier=fields.get("maintainer"),
                          architecture=fields.get("architecture"), source=source,
                          homepage=fields.get("homepage"), namespace=namespace)


def _apk(root: Path, namespace: str | None) -> Iterator[Package]:
    rel = "lib/apk/db/installed"
    if not _has_no_symlink(root, rel):
        return
    text = _read(root, rel)
    if not text:
        return
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if len(line) > 2 and line[1] == ":" and line[0] not in fields:
                fields[line[0]] = line[2:]
        if "P" in fields:
            yield Package("apk", fields["P"], fields.get("V", ""), "/" + rel,
                          license=fields.get("L"), supplier=fields.get("m"),
                          architecture=fields.get("A"), source=fields.get("o"),
                          homepage=fields.get("U"), namespace=namespace)


def _python(root: Path, rel: str) -> Package | None:
    text = _read(root, rel)
    if not text:
        return None
    headers = HeaderParser().parsestr(text, headersonly=True)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    license_ = headers.get("License-Expression") or headers.get("License")
    if license_ and ("\n" in license_ or len(license_) > 100):
        license_ = None  # the licence's full text, not its name
    return Package("pypi", name.strip(), version.strip(), "/" + rel,
                   license=(license_ or "").strip() or None,
                   supplier=headers.get("Author") or None,
                   homepage=headers.get("Home-page") or None)


def _npm(root: Path, rel: str) -> Package | None:
    text = _read(root, rel)
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return None
    license_ = data.get("license")
    author = data.get("author")
    return Package("npm", name, version, "/" + rel,
                   license=license_ if isinstance(license_, str) else None,
                   supplier=author if isinstance(author, str) else (
                       author.get("name") if isinstance(author, dict) and
                       isinstance(author.get("name"), str) else None),
                   homepage=data.get("homepage") if isinstance(data.get("homepage"), str)
                   else None)


def _language_packages(root: Path) -> Iterator[Package]:
    """Python and npm packages, found by walking the tree (symlinks are not followed)."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
            rel_dir = ""
        dirnames.sort()
        base = os.path.basename(dirpath)
        parent = os.path.basename(os.path.dirname(dirpath))
        if parent in ("site-packages", "dist-packages"):
            if base.endswith(".dist-info") and "METADATA" in filenames:
                found = _python(root, f"{rel_dir}/METADATA")
                if found:
                    yield found
            elif base.endswith(".egg-info") and "PKG-INFO" in filenames:
                found = _python(root, f"{rel_dir}/PKG-INFO")
                if found:
                    yield found
        in_modules = parent == "node_modules" or (
            parent.startswith("@") and
            os.path.basename(os.path.dirname(os.path.dirname(dirpath))) == "node_modules")
        if in_modules and not base.startswith(("@", ".")) and "package.json" in filenames:
            found = _npm(root, f"{rel_dir}/package.json")
            if found:
                yield found


def scan(root: Path) -> list[Package]:
    """Every package recorded in the filesystem at ``root``, in a stable order."""
    namespace = _os_id(root)
    found = [*_dpkg(root, namespace), *_apk(root, namespace), *_language_packages(root)]
    unique = {(p.type, p.name, p.version, p.location): p for p in found}
    return sorted(unique.values(), key=lambda p: (p.type, p.name.lower(), p.version,
                                                  p.location))
