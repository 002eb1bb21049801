"""The image the chart points at, made from the built binary.

No registry can be reached here, so the Dockerfile's base images cannot be
pulled. What the tests run instead is its final stage rebuilt from what it
names: the `ember` binary at the ENTRYPOINT path, the shared libraries it
links (which the distroless base provides), CA certificates, the WORKDIR owned
by the USER, and the ENTRYPOINT, USER and WORKDIR themselves read from the
Dockerfile, so a change there changes what the tests run.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def final_stage():
    """ENTRYPOINT, USER and WORKDIR of the Dockerfile's last stage."""
    stage = DOCKERFILE.read_text().split("\nFROM ")[-1]
    out = {"entrypoint": None, "user": "0:0", "workdir": "/"}
    for line in stage.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENTRYPOINT":
            out["entrypoint"] = json.loads(rest)
        elif word == "USER":
            out["user"] = rest.strip()
        elif word == "WORKDIR":
            out["workdir"] = rest.strip()
    if not out["entrypoint"]:
        raise ValueError(f"{DOCKERFILE}: the last stage has no ENTRYPOINT in exec form")
    return out


def shared_libraries(binary):
    """Absolute paths of the libraries `binary` loads, its dynamic loader included."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+) \(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


def build_rootfs(binary, dest):
    """Writes the image's root file system under `dest`; returns the stage's settings."""
    stage = final_stage()
    dest = Path(dest)
    entry = dest / stage["entrypoint"][0].lstrip("/")
    entry.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, entry)
    for lib in shared_libraries(binary):
        target = dest / str(lib).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib.resolve(), target)
    certs = dest / str(CA_BUNDLE).lstrip("/")
    certs.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(CA_BUNDLE, certs)
    # What distroless ships and a container runtime mounts over.
    for d in ("proc", "dev", "tmp"):
        (dest / d).mkdir(exist_ok=True)
    (dest / "etc" / "hosts").touch()
    (dest / "etc" / "nsswitch.conf").write_text("hosts: files dns\n")
    uid, _, gid = stage["user"].partition(":")
    workdir = dest / stage["workdir"].lstrip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    os.chown(workdir, int(uid), int(gid or uid))
    # Every file readable, as in an image layer.
    subprocess.run(["chmod", "-R", "a+rX", str(dest)], check=True)
    os.chmod(dest / "tmp", 0o1777)
    return stage
