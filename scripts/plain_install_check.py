"""CI: the error paths of a *plain* install (``pip install inverity``: no extras, no constraints file).

Run with the Python of a fresh virtual environment into which only ``torch`` and the package were installed
(``scripts/test.sh`` does this). Each case runs the installed ``inverity`` command and must print exactly one
line ``inverity: error: ...`` on stderr (naming the file or the cause), exit 2 and show no traceback — which is
what breaks when the CLI imports a module no declared dependency provides (``click`` was one).

Standard library only, so it runs before anything else is known to work.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path


def _png(path: Path, w: int = 16, h: int = 16) -> Path:
    """A small valid RGB PNG, written with zlib alone."""
    rows = b"".join(b"\x00" + b"".join(bytes(((x * 16) % 256, (y * 16) % 256, 128)) for x in range(w))
                    for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def main() -> int:
    exe = shutil.which("inverity", path=str(Path(sys.executable).parent))
    if exe is None:
        print("plain-install check: no 'inverity' command next to", sys.executable, file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="inverity-plain-"))
    good = _png(tmp / "good.png")
    garbage = tmp / "garbage.png"
    garbage.write_text("this is not an image\n")
    cases = [
        ("missing argument", ["encode"], "missing argument"),
        ("missing option", ["encode", str(good)], "missing option"),
        ("missing file", ["encode", str(tmp / "nope.png"), "-o", str(tmp / "o.webp"), "--codec", "webp"],
         "nope.png"),
        ("garbage input", ["encode", str(garbage), "-o", str(tmp / "o.webp"), "--codec", "webp"], "garbage.png"),
        ("unknown codec", ["encode", str(good), "-o", str(tmp / "o.bin"), "--codec", "nope"], "unknown codec"),
        ("unknown command", ["nosuch"], "no such command"),
        ("missing folder", ["compress", str(tmp / "nodir"), "-o", str(tmp / "out")], "nodir"),
        ("output over input", ["encode", str(good), "-o", str(good), "--codec", "png"], "refusing to write"),
        # the built-in policies are package data (inverity/policies/builtin/*.toml): the list names them
        ("unknown policy", ["compress", str(good), "-o", str(tmp / "out"), "--policy", "nosuch"], "diagnostic"),
    ]
    failures = 0
    for label, argv, needle in cases:
        p = subprocess.run([exe, *argv], capture_output=True, text=True, timeout=300)
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        ok = (p.returncode == 2 and len(lines) == 1 and lines[0].startswith("inverity: error: ")
              and needle.lower() in lines[0].lower() and "Traceback" not in p.stderr)
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {label}: rc={p.returncode} {lines[0] if lines else '(no stderr)'}")
        if not ok:
            print(p.stderr, file=sys.stderr)
    p = subprocess.run([exe, "encode", str(good), "-o", str(tmp / "ok.webp"), "--codec", "webp"],
                       capture_output=True, text=True, timeout=300)
    ok = p.returncode == 0 and (tmp / "ok.webp").is_file()
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} a plain encode works: rc={p.returncode} {p.stderr.strip()[:200]}")
    # a built-in policy read from the installed package's TOML file routes and writes (archive: lossless)
    p = subprocess.run([exe, "compress", str(good), "-o", str(tmp / "arch"), "--policy", "archive", "--jobs", "1"],
                       capture_output=True, text=True, timeout=300)
    ok = p.returncode == 0 and any(f.name.startswith("good.") for f in (tmp / "arch").glob("good.*"))
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} a built-in policy from package data works: rc={p.returncode} "
          f"{p.stderr.strip()[:200]}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"plain-install check: {len(cases) + 2 - failures}/{len(cases) + 2} passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
