"""The half of the Python sandbox that runs inside the sandbox (stdlib only, never imports thinktank).

`python_sandbox.py` starts it as ``unshare [--user --map-current-user --keep-caps] --net --pid --mount --ipc
--fork --kill-child --mount-proc python -S -s -B -P -u _harness.py CONFIG_FD``, so it begins as PID 1 of fresh
namespaces, with every capability: as root (root mode) or as the invoking user in its own user namespace
(rootless mode, the bracketed options). It then

1. reads its job (a marshal dict) from CONFIG_FD and closes it;
2. joins the run's memory cgroup if there is one, makes every mount read-only and nosuid, puts a size-capped
   private tmpfs on /tmp (also bound on /var/tmp and /dev/shm) and an empty read-only tmpfs on each directory
   of `hide` (/run; rootless: the user's home) and on the first directory above the interpreter others cannot
   enter; if the interpreter's prefix lies under one of those, a read-only copy of just the prefix is put back;
3. forks the worker and stays behind as a reaper: with every signal blocked (in rootless mode the worker has
   the same uid and could signal it), it waits, then writes the worker's exit status and CPU time to STATUS_FD,
   a pipe the worker closes before any candidate code runs, and exits - which makes the kernel kill every
   process left in the PID namespace;
4. the worker starts its own session, sets rlimits, then either drops to the run's own uid with no groups
   (root mode) or drops every capability, bounding and ambient set included (rootless mode: there is only one
   uid), sets no_new_privs, chdirs to /tmp and runs the candidate. It reports on REPORT_FD, one
   ``NONCE repr(dict)`` line per record, after each check and at the end; the parent trusts nothing else.
"""

import _signal
import builtins
import collections
import ctypes
import marshal
import math
import os
import resource
import sys
import time

_PRISTINE = dict(builtins.__dict__)  # taken before any candidate code exists in this process
_MATH = dict(vars(math))  # tests compare floats with math.isclose: patching it counts as tampering
_COUNTER = dict(vars(collections.Counter))  # a Python class: patching its __eq__ counts as tampering
_DICTS = frozenset({dict, collections.Counter, collections.OrderedDict, collections.defaultdict})
_SEQUENCES = frozenset({list, tuple, set, frozenset, collections.deque})
_PLAIN = frozenset({int, float, complex, str, bytes, bool, type(None)}) | _DICTS | _SEQUENCES
_BUILTIN, _MODULE = type(len), type(sys)
_OUT_CAP = 4096
_AT_FDCWD, _AT_EMPTY_PATH, _AT_RECURSIVE = -100, 0x1000, 0x8000
_MS_NOSUID, _MS_NODEV, _MS_BIND = 2, 4, 4096
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_MOUNT_SETATTR = 428, 429, 442  # same number on every architecture
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _mount(source, target: str, fstype, flags: int, data) -> None:
    _check(_libc.mount(source, target.encode(), fstype, ctypes.c_ulong(flags), data), f"mount {target}")


def _locked_ancestor(path: str):
    """The first directory above `path` that other users cannot enter (it would hide the stdlib), or None."""
    parts = path.split("/")
    for k in range(2, len(parts)):
        ancestor = "/".join(parts[:k])
        if not os.stat(ancestor).st_mode & 0o001:
            return ancestor
    return None


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _hidden(cfg: dict, prefix: str) -> list:
    """The directories to cover with an empty tmpfs, outermost only, never / or one holding /tmp."""
    wanted = [os.path.realpath(d) for d in cfg["hide"] if os.path.isdir(d)]
    locked = _locked_ancestor(prefix)
    wanted += [locked] if locked else []
    scratch = ("/tmp", "/var/tmp", "/dev/shm")  # already private; a directory under them is gone by then
    wanted = [d for d in wanted if not any(_under(t, d) or _under(d, t) for t in scratch)]
    return sorted({d for d in wanted if not any(o != d and _under(d, o) for o in wanted)})


def _setattr_readonly(dfd: int, path: bytes, extra_flags: int) -> None:
    attr = _MountAttr(0x1 | 0x2, 0, 0, 0)  # MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, on every mount below
    flags = ctypes.c_uint(_AT_RECURSIVE | extra_flags)
    args = (ctypes.c_int(dfd), path, flags, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
    _check(_libc.syscall(_SYS_MOUNT_SETATTR, *args), f"mount_setattr {path.decode() or 'prefix'}")


def _isolate_filesystem(cfg: dict) -> None:
    if cfg["cgroup"]:  # join the run's memory cgroup ("0" = this process) while /sys is still writable
        with open(os.path.join(cfg["cgroup"], "cgroup.procs"), "w") as procs:
            procs.write("0")
    prefix = os.path.realpath(sys.base_prefix)
    hidden = _hidden(cfg, prefix)
    covered = [d for d in hidden if _under(prefix, d)]
    tree = -1
    if covered:  # detach a read-only copy of the prefix before anything covers it
        flags = ctypes.c_uint(1 | 0o2000000 | _AT_RECURSIVE)  # OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC
        tree = _check(_libc.syscall(_SYS_OPEN_TREE, ctypes.c_int(_AT_FDCWD), prefix.encode(), flags), "open_tree")
        _setattr_readonly(tree, b"", _AT_EMPTY_PATH)  # a detached copy is not below / for the call that follows
    _setattr_readonly(_AT_FDCWD, b"/", 0)
    opts = f"size={cfg['disk_bytes']},nr_inodes=4096,mode=0700,uid={cfg['uid']},gid={cfg['gid']}".encode()
    _mount(b"tmpfs", "/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV, opts)
    for extra in ("/var/tmp", "/dev/shm"):
        if os.path.isdir(extra):
            _mount(b"/tmp", extra, None, _MS_BIND, None)
    for directory in hidden:
        _mount(b"tmpfs", directory, b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=1m,nr_inodes=256,mode=0755")
        if directory in covered:
            os.makedirs(prefix, exist_ok=True)
            move = (ctypes.c_int(tree), b"", ctypes.c_int(_AT_FDCWD), prefix.encode(), ctypes.c_uint(4))  # F_EMPTY_PATH
            _check(_libc.syscall(_SYS_MOVE_MOUNT, *move), "move_mount")
            os.close(tree)
        _setattr_readonly(_AT_FDCWD, directory.encode(), 0)


def _drop_capabilities() -> None:
    """Rootless: the worker keeps the user's uid, so take away everything the user namespace granted."""
    _check(_libc.prctl(47, 4, 0, 0, 0), "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")
    with open("/proc/sys/kernel/cap_last_cap") as last:
        for cap in range(int(last.read()) + 1):
            _check(_libc.prctl(24, cap, 0, 0, 0), "prctl(PR_CAPBSET_DROP)")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (x2): all empty
    _check(_libc.capset(header, data), "capset")
    with open("/proc/self/status") as status:
        left = [line for line in status if line.startswith("Cap") and int(line.split()[1], 16)]
    if left:
        raise OSError(f"capabilities left after dropping them: {''.join(left).strip()}")


def _confine(cfg: dict) -> None:
    """rlimits first (while privileged, so hard limits stick), then identity, then no way back via exec."""
    os.setsid()  # its own process group: killpg(0) reaches nothing outside the run
    cpu = cfg["cpu_s"]
    for limit, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (cfg["memory_bytes"],) * 2),
        (resource.RLIMIT_FSIZE, (cfg["file_bytes"],) * 2),
        (resource.RLIMIT_NPROC, (cfg["max_procs"],) * 2),
        (resource.RLIMIT_NOFILE, (256, 256)),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        hard = resource.getrlimit(limit)[1]
        if cfg["rootless"] and hard != resource.RLIM_INFINITY:  # cannot be raised without real privilege
            value = (min(value[0], hard), min(value[1], hard))
        resource.setrlimit(limit, value)
    if cfg["rootless"]:
        _drop_capabilities()
    else:
        os.setgroups([])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])
    _check(_libc.prctl(38, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    keyctl = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)
    if keyctl:  # KEYCTL_JOIN_SESSION_KEYRING: a fresh, empty session keyring instead of the caller's (best effort)
        _libc.syscall(keyctl, 1, None)
    os.chdir("/tmp")
    os.umask(0o077)


def _text(value) -> str:
    """An exact str (a str subclass could carry a hostile __repr__ into the report)."""
    try:
        return str.__str__(value) if isinstance(value, str) else str.__str__(str(value))
    except BaseException:
        return "<unprintable>"


class _Job:
    """One candidate run: executes the sources, watches for tampering, and writes the report."""

    def __init__(self, cfg: dict, write) -> None:
        self.cfg = cfg
        self.write = write
        self.sources = {"<solution>": cfg.get("source", ""), "<tests>": cfg.get("test_code", "")}
        self.violations: list[str] = []
        self.test_builtins = dict(_PRISTINE)
        sys.settrace = self._blocked("sys.settrace")  # a trace function could jump over asserts
        sys.setprofile = self._blocked("sys.setprofile")

    def _blocked(self, name: str):
        def stub(*args, **kwargs):
            self.violations.append(f"called {name}")

        return stub

    def describe(self, exc: BaseException) -> dict:
        """Type, message and the traceback restricted to candidate/test sources (never harness frames)."""
        frames, tb = [], exc.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            if code.co_filename in self.sources:
                lines = self.sources[code.co_filename].splitlines()
                line = lines[tb.tb_lineno - 1].strip() if 0 < tb.tb_lineno <= len(lines) else ""
                frames.append((code.co_filename, tb.tb_lineno, _text(code.co_name), line))
            tb = tb.tb_next
        trace = "\n".join(f'  File "{f}", line {n}, in {name}\n    {line}' for f, n, name, line in frames[-6:])
        where = f"{frames[-1][0]} line {frames[-1][1]}: {frames[-1][3]}" if frames else ""
        return {
            "ok": False,
            "etype": _text(type(exc).__name__),
            "msg": _text(exc)[:2000],
            "where": where[:500],
            "tb": trace[-3000:],
        }

    def tampering(self) -> str:
        problems = list(self.violations)
        tables = (("builtins", builtins.__dict__, _PRISTINE), ("the tests' builtins", self.test_builtins, _PRISTINE))
        for name, table, pristine in (*tables, ("math", vars(math), _MATH), ("Counter", vars(collections.Counter), _COUNTER)):
            changed = sorted(k for k in set(table) | set(pristine) if table.get(k, table) is not pristine.get(k, pristine))
            if changed:
                problems.append(f"{name} modified: {', '.join(map(_text, changed[:5]))}")
        if sys.gettrace() is not None or sys.getprofile() is not None:
            problems.append("a trace or profile function is installed")
        return "; ".join(problems)

    def guard(self, func):
        """Wrap a solution function so it may only hand plain data to the tests (no always-equal objects).

        Plain: exact builtin scalars and containers, plus Counter, OrderedDict, defaultdict and deque.
        """
        violations = self.violations

        def guarded(*args, **kwargs):
            result = func(*args, **kwargs)
            stack, seen, budget = [result], set(), 1_000_000
            while stack and budget > 0:
                value, budget = stack.pop(), budget - 1
                kind = type(value)
                if kind not in _PLAIN:
                    violations.append(f"returned a {_text(kind.__name__)} object; only plain data is accepted")
                    raise TypeError(violations[-1])
                if (kind in _SEQUENCES or kind in _DICTS) and id(value) not in seen:
                    seen.add(id(value))
                    stack.extend(dict.items(value) if kind in _DICTS else value)
            return result

        guarded.__name__ = guarded.__qualname__ = _text(getattr(func, "__name__", "candidate"))
        guarded.__doc__ = func.__doc__ if isinstance(func.__doc__, str) else None
        return guarded

    def load_solution(self, name: str):
        """Execute the solution; on failure report it and return None."""
        namespace = sys.modules["__main__"].__dict__ if name == "__main__" else {"__name__": name}
        try:
            exec(compile(self.sources["<solution>"], "<solution>", "exec"), namespace)
        except BaseException as exc:
            self.write(kind="done", phase="solution", **self.describe(exc))
            return None
        return namespace

    def test_namespace(self, solution: dict, guard: bool) -> dict:
        """The solution's names (HumanEval semantics) minus builtin shadows, with pristine builtins.

        With `guard`, every callable the solution defined (anything but a class or a C builtin) is wrapped.
        """
        namespace = {}
        for key, value in solution.items():
            if key in _PRISTINE and not key.startswith("__"):
                continue
            kind = type(value)
            if guard and callable(value) and not issubclass(kind, type) and kind is not _BUILTIN and kind is not _MODULE:
                value = self.guard(value)
            namespace[key] = value
        namespace.update(__builtins__=self.test_builtins, __name__="__tests__")
        return namespace

    def finish(self, **fields) -> None:
        problem = self.tampering()
        if problem:
            self.write(kind="done", ok=False, phase="tamper", etype="Tampering", msg=problem)
        else:
            self.write(kind="done", **fields)

    def run(self) -> None:
        mode = self.cfg["mode"]
        if mode == "run":
            self.sources["<solution>"] = self.cfg["source"]
            if self.load_solution("__main__") is not None:
                self.finish(ok=True)
            return
        solution = self.load_solution("__solution__")
        if solution is None:
            return
        entry = self.cfg.get("entry_point") or ""
        if mode != "asserts" and not callable(solution.get(entry)):
            self.write(kind="done", ok=False, phase="entry", etype="NameError", msg=f"entry point {entry!r} is not defined")
            return
        if mode != "check":
            self.write(kind="loaded")  # a later hang is an item's fault, not the solution's
        if mode == "check":
            self.check(solution, entry)
        else:
            self.items(solution, entry, mode)

    def check(self, solution: dict, entry: str) -> None:
        namespace = self.test_namespace(solution, guard=self.cfg["strict"])
        namespace[entry] = self.guard(solution[entry]) if self.cfg["strict"] else solution[entry]
        try:
            exec(compile(self.sources["<tests>"], "<tests>", "exec"), namespace)
            if not callable(namespace.get("check")):
                raise NameError("the test code defines no check(candidate)")
            namespace["check"](namespace[entry])
        except BaseException as exc:
            self.finish(phase="tests", **self.describe(exc))
            return
        self.finish(ok=True)

    def items(self, solution: dict, entry: str, mode: str) -> None:
        """Asserts or argument lists, one at a time, each reported as soon as it is done."""
        namespace = self.test_namespace(solution, guard=self.cfg["strict"] and mode == "asserts")
        namespace["__tt_args__"] = lambda *args, **kwargs: (args, kwargs)
        for index, source in enumerate(self.cfg["items"], start=self.cfg["offset"]):
            filename = f"<{'assert' if mode == 'asserts' else 'input'} {index}>"
            self.sources[filename] = source
            record: dict = {"ok": True}
            try:
                if mode == "asserts":
                    exec(compile(source, filename, "exec"), dict(namespace))
                else:
                    args, kwargs = eval(compile(f"__tt_args__({source}\n)", filename, "eval"), dict(namespace))
                    out = _text(repr(solution[entry](*args, **kwargs)))
                    if len(out) > _OUT_CAP:
                        out = f"{out[: _OUT_CAP - 64]}...<{len(out)} chars, hash {hash(out) & 0xFFFFFFFFFFFF:x}>"
                    record["out"] = out
            except BaseException as exc:
                record = self.describe(exc)
            problem = self.tampering()
            if problem:
                self.write(kind="done", ok=False, phase="tamper", etype="Tampering", msg=problem)
                return
            self.write(kind="item", i=index, **record)
        self.finish(ok=True)


def _reporter(fd: int, nonce: str):
    write, encode, getpid, exit_now, owner = os.write, str.encode, os.getpid, os._exit, os.getpid()

    def report(**fields) -> None:
        if getpid() != owner:  # a fork of the worker that wandered back into harness code
            exit_now(0)
        data = encode(f"{nonce} {fields!r}\n")
        while data:
            data = data[write(fd, data) :]

    return report


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _worker(cfg: dict, status_fd: int) -> None:
    try:
        _confine(cfg)
    except (OSError, ValueError) as exc:  # never run the candidate half-confined
        _write_all(status_fd, f"setup worker: {exc}\n".encode())
        os._exit(70)
    os.close(status_fd)
    sys.argv = [""]
    sys.modules["__main__"] = type(sys)("__main__")  # `import __main__` must not hand out this harness's classes
    report = _reporter(cfg.pop("report_fd"), cfg.pop("nonce"))
    _Job(cfg, report).run()
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105 - contextlib would be one more import on every run
            stream.flush()
        except BaseException:
            pass


def _reap(worker: int, deadline_s: int):
    """Wait for the worker, reaping every orphan PID 1 inherits meanwhile; bounded even if the parent died."""
    _libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: no /proc/1/mem, environ or fd for a worker of the same uid
    _signal.pthread_sigmask(_signal.SIG_BLOCK, _signal.valid_signals())  # signals from the worker: never acted on
    deadline = time.monotonic() + deadline_s
    while True:
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        if pid == worker:
            return status, usage
        if pid == 0:
            left = deadline - time.monotonic()
            if left <= 0:
                os._exit(1)
            _signal.sigtimedwait((_signal.SIGCHLD,), min(left, 1.0))


def main() -> None:
    config_fd = int(sys.argv[1])
    chunks = []
    while chunk := os.read(config_fd, 1 << 20):
        chunks.append(chunk)
    os.close(config_fd)
    cfg = marshal.loads(b"".join(chunks))
    status_fd = cfg.pop("status_fd")
    try:
        _isolate_filesystem(cfg)
    except OSError as exc:
        _write_all(status_fd, f"setup {exc}\n".encode())
        os._exit(0)
    worker = os.fork()
    if worker == 0:
        try:
            _worker(cfg, status_fd)
        except BaseException:
            sys.__excepthook__(*sys.exc_info())
            os._exit(70)
        os._exit(0)
    os.close(cfg["report_fd"])
    deadline_s = cfg["deadline_s"]
    cfg.clear()  # the nonce is the worker's alone
    status, usage = _reap(worker, deadline_s)
    cpu = usage.ru_utime + usage.ru_stime
    outcome = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.waitstatus_to_exitcode(status)}"
    _write_all(status_fd, f"{outcome} {cpu:.3f}".encode())
    os._exit(0)


if __name__ == "__main__":
    main()
