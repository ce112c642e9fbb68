/* Escape attempts run inside the RUN sandbox by tests/builder/test_sandbox_hardening.py.
 *
 * escape NAME [ARG]: tries one way out of the sandbox and prints one line,
 * "BLOCKED <errno name>" when the kernel refused, or "ESCAPED <what>" when it worked.
 * Exit status 0 either way: the test reads the line.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int blocked(void) {
    printf("BLOCKED %s\n", strerrorname_np(errno) ? strerrorname_np(errno) : "?");
    return 0;
}

/* mkdir x; chroot x; cd ../../..; chroot . -- then look for a host path. */
static int chroot_escape(const char *host_path) {
    mkdir("/tmp/escape-x", 0755);
    if (chroot("/tmp/escape-x") != 0) return blocked();
    for (int i = 0; i < 64; i++) chdir("..");
    if (chroot(".") != 0) return blocked();
    if (access(host_path, F_OK) == 0) { printf("ESCAPED sees %s\n", host_path); return 0; }
    printf("BLOCKED ENOENT\n");
    return 0;
}

static int do_mount(const char *fstype) {
    mkdir("/tmp/escape-m", 0755);
    if (mount("none", "/tmp/escape-m", fstype, 0, NULL) != 0) return blocked();
    printf("ESCAPED mounted %s\n", fstype);
    return 0;
}

static int write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return blocked();
    if (write(fd, text, strlen(text)) < 0) return blocked();
    printf("ESCAPED wrote %s\n", path);
    return 0;
}

static int load_module(void) {
    int fd = open("/escape", O_RDONLY);
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno == EPERM) return blocked();
    if (syscall(SYS_init_module, "\x7f" "ELF", 4, "") != 0 && errno == EPERM) return blocked();
    printf("ESCAPED module syscalls reached the loader (%s)\n", strerrorname_np(errno));
    return 0;
}

static int new_userns(void) {
    if (unshare(CLONE_NEWUSER) == 0) { printf("ESCAPED unshare(CLONE_NEWUSER)\n"); return 0; }
    int first = errno;
    pid_t pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) { waitpid(pid, NULL, 0); printf("ESCAPED clone(CLONE_NEWUSER)\n"); return 0; }
    errno = first;
    return blocked();
}

static int block_device(const char *dev) {
    unsigned maj, min;
    if (sscanf(dev, "%u:%u", &maj, &min) != 2) return 2;
    unlink("/tmp/escape-disk");
    if (mknod("/tmp/escape-disk", S_IFBLK | 0600, makedev(maj, min)) != 0) return blocked();
    int fd = open("/tmp/escape-disk", O_RDONLY);
    unlink("/tmp/escape-disk");
    if (fd < 0) return blocked();
    char buf[512];
    if (read(fd, buf, sizeof buf) < 0) return blocked();
    printf("ESCAPED read the host disk\n");
    return 0;
}

static int kmsg(void) {
    int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
    if (fd >= 0) { printf("ESCAPED opened /dev/kmsg\n"); return 0; }
    unlink("/tmp/escape-kmsg");
    if (mknod("/tmp/escape-kmsg", S_IFCHR | 0600, makedev(1, 11)) != 0) return blocked();
    fd = open("/tmp/escape-kmsg", O_RDONLY | O_NONBLOCK);
    unlink("/tmp/escape-kmsg");
    if (fd < 0) return blocked();
    printf("ESCAPED opened a kmsg node\n");
    return 0;
}

static int keyctl(void) {
    /* KEYCTL_JOIN_SESSION_KEYRING with a name: a keyring shared by name across the host */
    if (syscall(SYS_keyctl, 1, "escape-keyring") < 0) return blocked();
    printf("ESCAPED joined a named keyring\n");
    return 0;
}

static int trace(const char *pid_text) {
    pid_t pid = atoi(pid_text);
    if (ptrace(PTRACE_ATTACH, pid, 0, 0) == 0) { printf("ESCAPED traced %d\n", pid); return 0; }
    int first = errno;
    if (kill(pid, SIGKILL) == 0) { printf("ESCAPED killed %d\n", pid); return 0; }
    errno = first;
    return blocked();
}

/* ptrace PID 1 of the sandbox: our init runs with more capabilities than the command */
static int trace_init(void) {
    if (ptrace(PTRACE_ATTACH, 1, 0, 0) == 0) { printf("ESCAPED traced init\n"); return 0; }
    return blocked();
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *arg = argc > 2 ? argv[2] : "";
    if (argc < 2) return 2;
    if (!strcmp(argv[1], "chroot")) return chroot_escape(arg);
    if (!strcmp(argv[1], "mount")) return do_mount(arg);
    if (!strcmp(argv[1], "write")) return write_file(arg, argc > 3 ? argv[3] : "1\n");
    if (!strcmp(argv[1], "module")) return load_module();
    if (!strcmp(argv[1], "userns")) return new_userns();
    if (!strcmp(argv[1], "blockdev")) return block_device(arg);
    if (!strcmp(argv[1], "kmsg")) return kmsg();
    if (!strcmp(argv[1], "keyctl")) return keyctl();
    if (!strcmp(argv[1], "ptrace")) return trace(arg);
    if (!strcmp(argv[1], "ptrace-init")) return trace_init();
    return 2;
}
