"""Starts one container the way a container runtime would, from a JSON spec.

Run as root inside the pod's network namespace (`ip netns exec <ns> python3
run_container.py spec.json`). `ip netns exec` has already given this process
its own mount namespace, so the mounts made here vanish with the container:

- the image's root file system, bind-mounted onto itself and made read-only
  when the container's securityContext says readOnlyRootFilesystem;
- each volume mount (ConfigMap files, emptyDir, the pod's volume claim) and
  the pod's /etc/hosts, /proc and /dev on top of it;

then it changes root and working directory, drops to the user, group and
supplementary groups of the securityContext, sets no_new_privs, and replaces
itself with the entrypoint: exactly the rendered args and environment, nothing
inherited from the test process.
"""

import ctypes
import json
import os
import subprocess
import sys

PR_SET_NO_NEW_PRIVS = 38


def mount(*args):
    subprocess.run(["mount", *args], check=True)


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    root = spec["rootfs"]
    mount("--bind", root, root)
    mount("--make-private", root)
    if spec["read_only_root"]:
        mount("-o", "remount,bind,ro", root)
    for m in spec["mounts"]:
        target = root + m["path"]
        mount("--bind", m["source"], target)
        if m["read_only"]:
            mount("-o", "remount,bind,ro", target)
    mount("-t", "proc", "proc", root + "/proc")
    mount("--rbind", "/dev", root + "/dev")

    os.chroot(root)
    os.chdir(spec["workdir"])
    os.setgroups(spec["groups"])
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    if spec["no_new_privs"]:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    argv = spec["command"] + spec["args"]
    os.execve(argv[0], argv, spec["env"])


if __name__ == "__main__":
    main(sys.argv[1])
