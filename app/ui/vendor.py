"""Vendor the dashboard's JavaScript from npm at pinned versions: `python -m app.ui.vendor`.

Each package is fetched with `npm pack` into a temporary directory (no Node at run time, no
CDN), and only the files the pages load, with the package's licence, are copied to
`app/ui/static/vendor/<package>/`; `manifest.json` records every version and file's SHA-256.
`--check` verifies the committed files against the manifest instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).parent / "static" / "vendor"
# package -> (pinned version, files to copy from the package, licence files)
PACKAGES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "cytoscape": ("3.35.0", ("dist/cytoscape.min.js",), ("LICENSE",)),
    # 4.x bundles @dagrejs/dagre 3.0.0 (the layout itself) into its UMD build.
    "cytoscape-dagre": ("4.0.1", ("dist/cytoscape-dagre.min.js",), ("LICENSE",)),
    "@dagrejs/dagre": ("3.0.0", (), ("LICENSE",)),
    "swagger-ui-dist": (
        "5.32.0",
        ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
         "favicon-32x32.png"),
        ("LICENSE", "NOTICE"),
    ),
}  # fmt: skip


def sha256(path: Path) -> str:
    """The hex SHA-256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def target_dir(package: str) -> Path:
    """Where a package's files go: `@scope/name` becomes `scope-name`."""
    return VENDOR / package.lstrip("@").replace("/", "-")


def _pack(package: str, version: str, work: Path) -> Path:
    """`npm pack package@version` into `work`, unpacked: the package's root directory."""
    result = subprocess.run(
        ["npm", "pack", "--silent", f"{package}@{version}"],
        cwd=work, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"npm pack {package}@{version} failed: {result.stderr.strip()}")
    archive = work / result.stdout.strip().splitlines()[-1]
    unpacked = work / archive.stem
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    return unpacked / "package"


def vendor() -> dict:
    """Fetch every pinned package and copy its files; return the manifest written."""
    manifest: dict = {"generated_by": "python -m app.ui.vendor", "packages": {}}
    with tempfile.TemporaryDirectory(prefix="ui-vendor-") as tmp:
        for package, (version, files, licences) in PACKAGES.items():
            root = _pack(package, version, Path(tmp))
            found = json.loads((root / "package.json").read_text())["version"]
            if found != version:
                raise SystemExit(f"{package}: npm gave {found}, expected {version}")
            target = target_dir(package)
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            entry = {"version": version, "files": {}}
            for name in (*files, *licences):
                copied = target / Path(name).name
                shutil.copyfile(root / name, copied)
                entry["files"][copied.relative_to(VENDOR).as_posix()] = sha256(copied)
            manifest["packages"][package] = entry
    (VENDOR / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def check() -> list[str]:
    """Files that differ from the manifest (or are missing): empty when all is as vendored."""
    manifest = json.loads((VENDOR / "manifest.json").read_text())
    problems = []
    for package, entry in manifest["packages"].items():
        if entry["version"] != PACKAGES.get(package, ("?",))[0]:
            problems.append(f"{package}: manifest {entry['version']} is not the pinned version")
        for name, digest in entry["files"].items():
            path = VENDOR / name
            if not path.is_file() or sha256(path) != digest:
                problems.append(f"{name}: missing or changed")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify instead of fetching")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        print("\n".join(problems) or "vendored files match manifest.json")
        return 1 if problems else 0
    for package, entry in vendor()["packages"].items():
        print(f"{package} {entry['version']}: {', '.join(entry['files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
