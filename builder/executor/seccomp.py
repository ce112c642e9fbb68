"""Docker's default seccomp profile, as it applies to a RUN step with the default capabilities.

Docker's profile (moby ``profiles/seccomp/default.json``) allows a list of system calls, some
only with certain arguments, some only for certain architectures or capabilities, and makes
every other call fail with ``EPERM``. A RUN step never has ``CAP_SYS_ADMIN``,
``CAP_SYS_PTRACE``, ``CAP_SYS_MODULE`` and the like (see :mod:`builder.executor.hardening`),
so only the rules for the default capability set are written here.

The filter is built with libseccomp's own Python binding (Debian's ``python3-seccomp``, made
from the same source as the ``libseccomp2`` that docker's runc links) and compiled once per
process to classic BPF; a sandbox loads the compiled program with a single ``prctl``, so a
forked child calls nothing but the kernel.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import platform
import tempfile
from typing import Any

from builder.errors import BuildError

#: Calls allowed whatever their arguments (docker's first rule, and the rules for
#: ``CAP_SYS_CHROOT`` and kernels from 4.8 on, which every RUN step meets).
_ALLOWED_TEXT = (
    "accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32 "
    "clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime "
    "clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect "
    "copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old "
    "epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit "
    "exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir "
    "fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr "
    "flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync "
    "ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd getdents "
    "getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 "
    "getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid "
    "getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname "
    "getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch "
    "inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents "
    "io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit "
    "io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule "
    "landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat "
    "listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise "
    "membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 "
    "mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive "
    "mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget "
    "msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat "
    "_newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc "
    "pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 "
    "process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead "
    "readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg "
    "remap_file_pages removexattr rename renameat renameat2 restart_syscall rmdir rseq "
    "rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend "
    "rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr "
    "sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler "
    "sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr "
    "sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop "
    "semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid "
    "setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid "
    "setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid "
    "setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address "
    "setuid setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd "
    "signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 "
    "statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create "
    "timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime "
    "timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime "
    "timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat "
    "utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev "
    "process_vm_readv process_vm_writev ptrace chroot"
)
ALLOWED = tuple(_ALLOWED_TEXT.split())

#: Calls allowed only on some architectures (``platform.machine()`` names).
ARCH_ALLOWED = {
    "x86_64": ("arch_prctl", "modify_ldt"),
    "aarch64": ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
                "cacheflush", "set_tls"),
}

#: ``personality(2)`` personas allowed, as docker lists them: PER_LINUX, PER_LINUX32, each
#: with UNAME26, and the query ``0xffffffff``.
PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

#: The namespace flags ``clone(2)`` may not carry without ``CAP_SYS_ADMIN`` (all CLONE_NEW*).
CLONE_NAMESPACES = 0x7E020000
AF_VSOCK = 40

#: Secondary ABIs the kernel also accepts on the native one, as in docker's ``archMap``.
_SUB_ARCHES = {"x86_64": ("X86", "X32"), "aarch64": ("ARM",)}

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class SeccompError(BuildError):
    """The seccomp filter could not be built or loaded."""


def _binding() -> Any:
    try:
        import seccomp  # type: ignore[import-not-found]
    except ImportError:
        raise SeccompError(
            "the RUN sandbox needs libseccomp's Python binding (module 'seccomp'): "
            "install Debian's python3-seccomp and re-run scripts/install.sh") from None
    return seccomp


def _build_filter() -> Any:
    """The libseccomp filter of docker's default profile for this machine's architecture."""
    sc = _binding()
    f = sc.SyscallFilter(sc.ERRNO(errno.EPERM))
    # Docker sets no_new_privs only when asked; the loader holds CAP_SYS_ADMIN instead.
    f.set_attr(sc.Attr.CTL_NNP, 0)
    # a binary tree of syscall numbers instead of a linear list: fewer BPF steps per call
    with contextlib.suppress(RuntimeError, ValueError, AttributeError):
        f.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    machine = platform.machine()
    for name in _SUB_ARCHES.get(machine, ()):
        f.add_arch(getattr(sc.Arch, name))
    for name in (*ALLOWED, *ARCH_ALLOWED.get(machine, ())):
        _add(f, sc.ALLOW, name)
    for persona in PERSONAS:
        _add(f, sc.ALLOW, "personality", sc.Arg(0, sc.EQ, persona))
    _add(f, sc.ALLOW, "socket", sc.Arg(0, sc.NE, AF_VSOCK))
    _add(f, sc.ALLOW, "clone", sc.Arg(0, sc.MASKED_EQ, CLONE_NAMESPACES, 0))
    # clone3 passes its flags in memory a filter cannot read: ENOSYS makes the C library
    # fall back to clone, whose flags the rule above checks.
    _add(f, sc.ERRNO(errno.ENOSYS), "clone3")
    return f


def _add(f: Any, action: Any, name: str, *args: Any) -> None:
    # a call this libseccomp or architecture does not know: nothing to allow
    with contextlib.suppress(RuntimeError, ValueError):
        f.add_rule(action, name, *args)


@functools.cache
def default_program() -> bytes:
    """Docker's default profile compiled to a classic BPF program (``struct sock_filter``
    array), built once per process."""
    f = _build_filter()
    with tempfile.TemporaryFile() as out:
        f.export_bpf(out)
        out.seek(0)
        program = out.read()
    if not program or len(program) % 8:
        raise SeccompError("libseccomp produced no BPF program for the default profile")
    return program


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


_libc = ctypes.CDLL(None, use_errno=True)


def load(program: bytes) -> None:
    """Install ``program`` as this thread's seccomp filter (inherited by children and kept
    across execve). The caller needs ``CAP_SYS_ADMIN`` or no_new_privs; ``OSError`` on
    failure."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    rc = _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"loading the seccomp filter: {os.strerror(err)}")
