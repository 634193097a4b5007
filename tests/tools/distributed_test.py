#!/usr/bin/env python3
"""`lenet train` under mpirun: ranks end on exactly the weights of one process with as many threads
in all; ranks given different options refuse to start; a rank killed mid-run makes the others stop
with one line, the checkpoint stays good and resuming from it finishes on the uninterrupted weights;
and two hosts of their own (network namespaces joined by veth) train like one process.

usage: distributed_test.py path/to/lenet exact|faults|hosts   (from the source root; 77 = skipped)

"hosts" needs root (CI runs as root) to make the namespaces; elsewhere it skips with one line. Its
traffic stays on the namespaces' own addresses (10.213.0.0/24), and it removes the namespaces
when it ends, pass or fail.
"""
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

LENET = os.path.abspath(sys.argv[1])
PART = sys.argv[2]
DATA = os.path.abspath("data/mnist")
MPIRUN = shutil.which("mpirun")
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
failures = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAIL:", what)
    else:
        print("ok:", what)


def tensors(path):
    """The tensors of a safetensors file, name -> bytes (read here, not by the code under test)."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    data = blob[8 + n:]
    return {name: data[t["data_offsets"][0]:t["data_offsets"][1]] for name, t in header.items()}


def train_args(out, *extra):
    return ["train", "--data", DATA, "--metrics", "", "--plot", "", "--log-every", "1000000", "--out", out, *extra]


def one_process(out, threads, *extra):
    r = subprocess.run([LENET, *train_args(out, *extra), "--threads", str(threads)], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        sys.exit(f"one process failed: {r.stderr.strip()}")


def mpirun(ranks, out, threads, *extra, mpi_options=(), timeout=600):
    return subprocess.run([MPIRUN, "--oversubscribe", "-np", str(ranks), *mpi_options, LENET,
                           *train_args(out, *extra), "--threads", str(threads)],
                          capture_output=True, text=True, timeout=timeout, env=ENV)


def same_weights(a, b):
    ta, tb = tensors(a), tensors(b)
    return len(ta) > 0 and ta == tb


def exact(tmp):
    runs = [
        # model, ranks x threads, options
        ("lenet5", 2, 1, ["--limit", "3000", "--epochs", "2", "--batch-size", "64"]),
        ("mlp", 2, 2, ["--limit", "2000", "--epochs", "2", "--batch-size", "50"]),
        # One pattern per step: rank 1 has no shard of any batch; SDLM's curvature pass included.
        ("lenet1998", 2, 1, ["--limit", "200", "--epochs", "2", "--curvature-samples", "50"]),
    ]
    for model, ranks, threads, options in runs:
        single = os.path.join(tmp, f"{model}-1x{ranks * threads}.safetensors")
        spread = os.path.join(tmp, f"{model}-{ranks}x{threads}.safetensors")
        one_process(single, ranks * threads, "--model", model, *options)
        r = mpirun(ranks, spread, threads, "--model", model, *options)
        check(r.returncode == 0, f"{model}: mpirun -np {ranks} --threads {threads} exits 0 ({r.stderr.strip()[-300:]})")
        if r.returncode == 0:
            check(same_weights(single, spread),
                  f"{model}: {ranks} ranks of {threads} thread(s) end on the weights of 1 process of {ranks * threads}")
            check(r.stdout.count(f"lenet train: {model}, seed 1, {ranks} ranks of {threads} thread(s)") == 1,
                  f"{model}: only rank 0 prints the header")
            check(r.stdout.count("epoch 2/2 done") == 1, f"{model}: only rank 0 reports the epochs")
    # The comparison can fail: another thread count in all ends elsewhere.
    other = os.path.join(tmp, "lenet5-1x1.safetensors")
    one_process(other, 1, "--model", "lenet5", "--limit", "3000", "--epochs", "2", "--batch-size", "64")
    check(not same_weights(other, os.path.join(tmp, "lenet5-2x1.safetensors")),
          "lenet5: 1 thread in all ends on other weights than 2 (the comparison can fail)")

    # Ranks started with different options refuse to train, with one line from rank 0.
    out = os.path.join(tmp, "disagree.safetensors")
    r = subprocess.run([MPIRUN, "-np", "1", LENET, *train_args(out, "--limit", "300", "--epochs", "1", "--seed", "1"),
                        ":", "-np", "1", LENET, *train_args(out, "--limit", "300", "--epochs", "1", "--seed", "2")],
                       capture_output=True, text=True, timeout=120, env=ENV)
    said = [l for l in r.stderr.splitlines() if l.startswith("lenet train:")]
    check(r.returncode != 0 and not os.path.exists(out), "ranks with different seeds refuse to train")
    check(len(said) == 1 and "rank 1 starts from other options" in said[0], f"one line names rank 1: {said}")


def rank_pids(mpirun_pid, rank):
    """The pids of lenet processes of rank `rank` (by OpenMPI's environment), children of mpirun."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if not f.read().startswith(LENET.encode() + b"\0train"):
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"OMPI_COMM_WORLD_RANK={rank}".encode() in f.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            continue
    return found


def job_end(job):
    """Waits (at most a minute) for an mpirun job whose rank 1 was just killed or stopped: the
    seconds it took, and the lines rank 0 wrote to stderr about it."""
    since = time.time()
    try:
        _, stderr = job.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        job.kill()
        _, stderr = job.communicate()
    return time.time() - since, [l for l in stderr.splitlines() if l.startswith("lenet train: rank 0 of 2:")]


def faults(tmp):
    options = ["--limit", "20000", "--epochs", "3", "--batch-size", "64", "--checkpoint-every", "20"]
    checkpoint = os.path.join(tmp, "run.ckpt")
    out = os.path.join(tmp, "killed.safetensors")
    args = [MPIRUN, "-np", "2", LENET, *train_args(out, *options, "--checkpoint", checkpoint), "--threads", "1"]
    job = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 120
    while not os.path.exists(checkpoint) and time.time() < deadline and job.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the run, past the first checkpoint
    victims = rank_pids(job.pid, 1)
    check(len(victims) == 1, f"found rank 1's process ({victims})")
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    waited, ours = job_end(job)
    check(job.returncode != 0, f"the job fails (exit {job.returncode})")
    check(waited < 30, f"the other rank stopped {waited:.1f} s after the kill (< 30 s)")
    check(len(ours) == 1 and checkpoint in ours[0], f"rank 0 says why in one line naming the checkpoint: {ours}")
    check(not os.path.exists(out), "no weights written by the killed run")

    # A rank that hangs (stopped, not dead: mpirun notices nothing) is given up after --rank-timeout.
    hung = os.path.join(tmp, "hung.safetensors")
    job = subprocess.Popen([MPIRUN, "-np", "2", LENET, *train_args(hung, *options), "--threads", "1",
                            "--rank-timeout", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    victims = []
    while not victims and time.time() < deadline and job.poll() is None:
        time.sleep(0.2)
        victims = rank_pids(job.pid, 1)
    time.sleep(0.5)
    for pid in victims:
        os.kill(pid, signal.SIGSTOP)
    waited, ours = job_end(job)
    check(job.returncode != 0 and waited < 30, f"a hung rank ends the job after {waited:.1f} s (exit {job.returncode})")
    check(len(ours) == 1 and "no word from the other ranks for 3 s" in ours[0], f"rank 0 says so: {ours}")
    for pid in victims:  # mpirun has killed it; in case it has not
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass

    resumed = os.path.join(tmp, "resumed.safetensors")
    r = mpirun(2, resumed, 1, *options, "--resume", checkpoint)
    check(r.returncode == 0 and "resuming" in r.stdout, f"mpirun --resume finishes the run ({r.stderr.strip()[-300:]})")
    straight = os.path.join(tmp, "straight.safetensors")
    one_process(straight, 2, *options)
    check(r.returncode == 0 and same_weights(resumed, straight),
          "the resumed run ends on the weights of an uninterrupted one")


def sh(*command, check_result=True):
    return subprocess.run(command, capture_output=True, text=True, check=check_result)


def hosts(tmp):
    suffix = str(os.getpid() % 100000)
    names = {"a": f"lenet-a-{suffix}", "b": f"lenet-b-{suffix}"}
    address = {"a": "10.213.0.1", "b": "10.213.0.2"}
    try:
        sh("ip", "netns", "add", names["a"])
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"SKIP: cannot make network namespaces here (needs root and CAP_NET_ADMIN): "
              f"{getattr(e, 'stderr', '') or e}".strip())
        sys.exit(77)
    try:
        try:
            sh("ip", "netns", "add", names["b"])
            veth = (f"lva{suffix}", f"lvb{suffix}")
            sh("ip", "link", "add", veth[0], "type", "veth", "peer", "name", veth[1])
            for host, link in zip("ab", veth):
                sh("ip", "link", "set", link, "netns", names[host])
                sh("ip", "-n", names[host], "addr", "add", address[host] + "/24", "dev", link)
                sh("ip", "-n", names[host], "link", "set", link, "up")
                sh("ip", "-n", names[host], "link", "set", "lo", "up")
        except subprocess.CalledProcessError as e:
            # Made but not entered: a chroot whose root is not a mount point, say.
            print(f"SKIP: cannot set up the two hosts here: {' '.join(e.cmd)}: {e.stderr.strip()}")
            sys.exit(77)
        # The launch agent mpirun runs instead of ssh: it enters the host's namespace under the
        # host's own name and runs the command line there.
        agent = os.path.join(tmp, "enter-host")
        with open(agent, "w") as f:
            f.write("#!/bin/sh\nhost=$1; shift\ncase \"$host\" in\n")
            for host in "ab":
                f.write(f"  {address[host]}) exec ip netns exec {names[host]} unshare --uts sh -c "
                        f"\"hostname lenet-{host}; $*\" ;;\n")
            f.write("esac\necho \"enter-host: unknown host $host\" >&2; exit 1\n")
        os.chmod(agent, 0o755)
        hostfile = os.path.join(tmp, "hostfile")
        with open(hostfile, "w") as f:
            f.write(f"{address['a']} slots=1\n{address['b']} slots=1\n")

        options = ["--limit", "3000", "--epochs", "2", "--batch-size", "64"]
        spread = os.path.join(tmp, "hosts.safetensors")
        mpi = ["--hostfile", hostfile, "-np", "2", "--mca", "plm_rsh_agent", agent, "--mca", "btl", "tcp,self",
               "--mca", "btl_tcp_if_include", "10.213.0.0/24", "--mca", "oob_tcp_if_include", "10.213.0.0/24"]
        command = [MPIRUN, *mpi, LENET, *train_args(spread, *options), "--threads", "1"]
        # mpirun itself runs on host a, under its name.
        r = subprocess.run(["ip", "netns", "exec", names["a"], "unshare", "--uts", "sh", "-c",
                            'hostname lenet-a; exec "$@"', "sh", *command],
                           capture_output=True, text=True, timeout=300, env=ENV)
        check(r.returncode == 0, f"mpirun across the two hosts exits 0 ({r.stderr.strip()[-400:]})")
        probe = subprocess.run(["ip", "netns", "exec", names["a"], "unshare", "--uts", "sh", "-c",
                                'hostname lenet-a; exec "$@"', "sh", MPIRUN, *mpi, "hostname"],
                               capture_output=True, text=True, timeout=120, env=ENV)
        check(sorted(probe.stdout.split()) == ["lenet-a", "lenet-b"], f"one rank on each host: {probe.stdout.split()}")
        single = os.path.join(tmp, "single.safetensors")
        one_process(single, 2, *options)
        check(r.returncode == 0 and same_weights(spread, single),
              "one rank on each host ends on the weights of one process of 2 threads")
    finally:
        for name in names.values():
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        check(names["a"] not in left and names["b"] not in left, "the namespaces are removed")


def main():
    # meson's timeout sends SIGTERM: end through the finally clauses, which remove the namespaces.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("distributed_test: terminated"))
    if not MPIRUN:
        print("SKIP: no mpirun (tools/run installs openmpi-bin)")
        return 77
    if not os.path.exists(os.path.join(DATA, "train-images-idx3-ubyte")):
        print("SKIP: no MNIST in data/mnist (tools/run fetches it)")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        {"exact": exact, "faults": faults, "hosts": hosts}[PART](tmp)
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
