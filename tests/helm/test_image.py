"""An OCI image the chart can run, built without a Docker engine.

buildah (Debian's package, vfs storage, chroot isolation: no daemon, no
overlay mounts) commits image.build_rootfs, the Dockerfile's final stage made
from the built binary, with the stage's ENTRYPOINT, USER and WORKDIR, then runs
it. The Dockerfile itself needs its base images from a registry, which this
machine cannot reach; this checks what the chart depends on: the binary runs
from that layout as that user.
"""

import json
import shutil
import subprocess

from conftest import skip_or_fail_missing_tool
from image import build_rootfs


def test_image_from_the_built_binary_runs(ember_binary, tmp_path):
    if not shutil.which("buildah"):
        skip_or_fail_missing_tool("buildah", "apt-get install buildah (scripts/test.sh does)")
    rootfs = tmp_path / "rootfs"
    stage = build_rootfs(ember_binary, rootfs)
    storage = ["--storage-driver", "vfs", "--root", str(tmp_path / "storage"), "--runroot", str(tmp_path / "run")]

    def buildah(*args):
        done = subprocess.run(["buildah", *storage, *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"buildah {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    try:
        work = buildah("from", "scratch")
        buildah("copy", work, f"{rootfs}/", "/")
        buildah(
            "config",
            "--entrypoint", json.dumps(stage["entrypoint"]),
            "--user", stage["user"],
            "--workingdir", stage["workdir"],
            "--port", "4040",
            work,
        )
        buildah("commit", "--quiet", work, "localhost/ember:test")
        config = json.loads(buildah("inspect", "--type", "image", "localhost/ember:test"))["OCIv1"]["config"]
        assert config["User"] == "10001:10001", config
        assert config["Entrypoint"] == ["/usr/bin/ember"], config
        run = buildah("from", "localhost/ember:test")
        version = buildah("run", "--isolation", "chroot", "--user", config["User"], run, "--",
                          *config["Entrypoint"], "-version")
        assert version.startswith("ember "), version
        modules = buildah("run", "--isolation", "chroot", "--user", config["User"], run, "--",
                          *config["Entrypoint"], "-modules")
        assert "ingester" in modules and "distributor" in modules, modules
    finally:
        subprocess.run(["buildah", *storage, "rm", "--all"], capture_output=True)
        # vfs layers are plain directories owned by many users; rm them as root.
        subprocess.run(["rm", "-rf", str(tmp_path / "storage"), str(tmp_path / "run")])
