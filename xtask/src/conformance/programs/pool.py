# python3 multiprocessing inside the emulated userland (cargo xtask conformance,
# workload `multiprocessing`): a Pool of forked workers (semaphores in /dev/shm, pipes)
# and one of spawned ones (each a new emulated python3), each result compared with
# the same work done in this process.
import hashlib
import multiprocessing
import platform


def digest(n):
    h = hashlib.sha256()
    for i in range(200):
        h.update(f"{n}:{i}".encode())
    return h.hexdigest()


def main():
    work = list(range(400))
    want = [digest(n) for n in work]
    for method in ("fork", "spawn"):
        context = multiprocessing.get_context(method)
        with context.Pool(4) as pool:
            got = pool.map(digest, work, chunksize=10)
        if got != want:
            raise SystemExit(f"pool FAILED: the {method} pool's results differ")
        queue = context.Queue()
        process = context.Process(target=queue.put, args=(platform.machine(),))
        process.start()
        machine = queue.get(timeout=120)
        process.join(120)
        if process.exitcode != 0 or machine != platform.machine():
            raise SystemExit(f"pool FAILED: a {method} process said {machine!r}, exit {process.exitcode}")
    print(f"pool ok: python {platform.python_version()} {platform.machine()}, fork and spawn pools of 4")


if __name__ == "__main__":
    main()
