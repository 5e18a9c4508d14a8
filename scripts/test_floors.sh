#!/usr/bin/env bash
# Run the unit tests against the lowest versions pyproject.toml allows.
#
# Every direct dependency (project.dependencies, every extra, and the build backend in build-system.requires) is
# pinned to its declared floor (`name>=X` -> `name==X`); the pins are generated from pyproject.toml on each run, so
# they cannot drift from it. Indirect dependencies resolve normally. The venv lives in
# ${THINKTANK_CACHE:-~/.cache/thinktank}/floors-venv and is reused while the pinned set (and the Python) is the
# same; any change rebuilds it from scratch, so nothing left over from an older set is tested by accident.
# thinktank itself is installed editable (re-pointed at this checkout when the venv was built from another), so
# the code under test is always the work tree's.
#
# Exact pins rather than a "lowest" resolver strategy: if two floors cannot be installed together (or a floor has
# no build for this Python) the install fails and names the floor, instead of quietly testing a higher version.
#
# The unit tests are `-m "not integration"`: everything under tests/integration/ and tests/search/test_search_real.py
# needs the built llama-server and a real model, which `make test` covers with the current versions.
# FLOORS_LINT=1 also runs `make lint`'s commands with the floor ruff and mypy (off by default: lint is not a CI gate).
#
# Usage: scripts/test_floors.sh [extra pytest args]   (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
CACHE=${THINKTANK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/thinktank}
VENV=$CACHE/floors-venv
mkdir -p "$CACHE"
start=$SECONDS

# floors.txt: the `name==floor` pins; key: what the venv was built from; extras: the extras to install.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" - "$work" <<'EOF'
import json, re, sys, tomllib
from pathlib import Path

out = Path(sys.argv[1])
pyproject = tomllib.loads(Path("pyproject.toml").read_text())
project = pyproject["project"]
canon = lambda name: re.sub(r"[-_.]+", "-", name).lower()
own = canon(project["name"])

def floor(req: str) -> str:
    """`name[extra]>=1.2,<2; marker` -> `name==1.2; marker`."""
    req, _, marker = req.partition(";")
    m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(.*?)\s*", req)
    if not m:
        sys.exit(f"test_floors: cannot parse requirement {req!r}")
    name, specs = canon(m[1]), [s.strip() for s in m[2].split(",") if s.strip()]
    lows = [s[2:].strip() for s in specs if s.startswith((">=", "~=", "=="))]
    if len(lows) != 1:
        sys.exit(f"test_floors: {name} needs exactly one floor (>=, ~= or ==) in pyproject.toml, has {specs or 'none'}")
    return f"{name}=={lows[0]}" + (f"; {marker.strip()}" if marker.strip() else "")

extras, pins = [], [floor(r) for r in project["dependencies"]]
for extra, reqs in project.get("optional-dependencies", {}).items():
    external = [r for r in reqs if canon(re.split(r"[\s\[<>=~!;]", r, maxsplit=1)[0]) != own]
    if external:
        extras.append(extra)
        pins += [floor(r) for r in external]
pins += [floor(r) for r in pyproject["build-system"]["requires"]]
names = [p.split("==")[0] for p in pins]
if len(set(names)) != len(names):
    sys.exit(f"test_floors: a dependency is listed twice: {sorted(n for n in names if names.count(n) > 1)}")

(out / "floors.txt").write_text("\n".join(sorted(pins)) + "\n")
(out / "extras").write_text(",".join(extras))
(out / "key").write_text(json.dumps({
    "python": sys.version, "pins": sorted(pins), "extras": extras,
    "scripts": project.get("scripts", {}), "requires-python": project.get("requires-python"),
}, indent=1) + "\n")
EOF
extras=$(cat "$work/extras")

if [[ -f $VENV/.floors-key ]] && cmp -s "$work/key" "$VENV/.floors-key" && [[ -x $VENV/bin/python ]]; then
    echo "test-floors: reusing $VENV (pinned set unchanged)"
else
    echo "test-floors: building $VENV with:"
    sed 's/^/    /' "$work/floors.txt"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # PIP_CONSTRAINT (not just -c) so the isolated build of thinktank gets the hatchling floor too.
    PIP_CONSTRAINT="$work/floors.txt" "$VENV/bin/python" -m pip install -q -e ".[$extras]" || {
        echo "test-floors: the floors above cannot be installed together on $("$PYTHON" --version);" \
             "raise the one pip names in pyproject.toml (a floor must be a released version)" >&2
        exit 1
    }
    cp "$work/key" "$VENV/.floors-key"
fi
# A reused venv may hold the editable install of another checkout (CI clones afresh each run): point it here.
here=$(cd / && "$VENV/bin/python" -c 'import thinktank, pathlib; print(pathlib.Path(thinktank.__file__).parent.parent)' 2>/dev/null || true)
if [[ $here != "$PWD" ]]; then
    PIP_CONSTRAINT="$work/floors.txt" "$VENV/bin/python" -m pip install -q --no-deps -e .
fi

# Check that what is installed is the floors (a stray constraint or a stale venv would show here).
"$VENV/bin/python" - "$work/floors.txt" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version

def norm(v: str) -> tuple[str, ...]:  # 8 == 8.0.0, 6.0 == 6
    parts = v.split("+")[0].split(".")
    while len(parts) > 1 and parts[-1] == "0":
        parts.pop()
    return tuple(parts)


bad = []
for line in open(sys.argv[1]).read().split("\n"):
    if not line or line.split("==")[0] == "hatchling":  # the build backend lives only in the build env
        continue
    name, want = line.split(";")[0].split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have is None or norm(have) != norm(want):
        bad.append(f"{name}: want {want}, have {have}")
if bad:
    sys.exit("test-floors: installed versions are not the floors: " + "; ".join(bad))
EOF
"$VENV/bin/python" -m pip check
echo "test-floors: venv ready after $((SECONDS - start))s; the unit tests:"

"$VENV/bin/python" -m pytest -q -m "not integration" -p no:cacheprovider "$@"
if [[ ${FLOORS_LINT:-0} == 1 ]]; then  # the ruff and mypy floors: `make lint` with the floor versions
    "$VENV/bin/ruff" check thinktank tests benchmarks
    "$VENV/bin/ruff" format --check thinktank tests benchmarks
    "$VENV/bin/mypy" thinktank
fi
