/* Hostile probes for the runtime tests: run inside a container, each line
 * says what one attack got: `NAME=refused (errno)` or `NAME=allowed`, or a
 * value. Built static (gcc -static) so it runs in any root.
 *
 *   probe [--block MAJ:MIN] [--port N] [--secret TXET]
 *
 * The secret is given reversed, so that the probe's own command line does
 * not hold it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static void verdict(const char *name, int rc) {
    if (rc < 0)
        printf("%s=refused (%s)\n", name, strerror(errno));
    else
        printf("%s=allowed\n", name);
}

static void status_field(const char *field, const char *name) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            char *v = line + n + 1;
            while (*v == ' ' || *v == '\t') v++;
            v[strcspn(v, "\n")] = 0;
            printf("%s=%s\n", name, v);
        }
    }
    if (f) fclose(f);
}

/* Reads one byte: "masked" when nothing can be read. */
static void masked(const char *name, const char *path) {
    int fd = open(path, O_RDONLY);
    char c;
    if (fd < 0 || read(fd, &c, 1) <= 0)
        printf("%s=masked\n", name);
    else
        printf("%s=visible\n", name);
    if (fd >= 0) close(fd);
}

static void writable(const char *name, const char *path) {
    int fd = open(path, O_WRONLY);
    verdict(name, fd);
    if (fd >= 0) close(fd);
}

static void connect_to(const char *name, const char *ip, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int rc = connect(s, (struct sockaddr *)&a, sizeof a);
    if (rc < 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = s, .events = POLLOUT};
        int err = ETIMEDOUT;
        socklen_t len = sizeof err;
        if (poll(&p, 1, 1000) == 1) getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
        errno = err;
        rc = err ? -1 : 0;
    }
    verdict(name, rc);
    close(s);
}

/* Whether `secret` is in any visible process' environment, command line or memory maps. */
static void secret_scan(const char *secret) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    int found = 0;
    char path[300], buf[65536];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        const char *files[] = {"environ", "cmdline"};
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "/proc/%s/%s", e->d_name, files[i]);
            int fd = open(path, O_RDONLY);
            if (fd < 0) continue;
            ssize_t n = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (n > 0 && memmem(buf, n, secret, strlen(secret))) found = 1;
        }
    }
    if (d) closedir(d);
    printf("secret=%s\n", found ? "visible" : "hidden");
}

int main(int argc, char **argv) {
    const char *block = NULL, *secret = NULL;
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--block")) block = argv[i + 1];
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--secret")) {
            size_t n = strlen(argv[i + 1]);
            char *s = malloc(n + 1);
            for (size_t j = 0; j < n; j++) s[j] = argv[i + 1][n - 1 - j];
            s[n] = 0;
            secret = s;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("pid=%d\n", getpid());
    status_field("CapEff", "cap_eff");
    status_field("CapPrm", "cap_prm");
    status_field("CapBnd", "cap_bnd");
    status_field("CapInh", "cap_inh");
    status_field("CapAmb", "cap_amb");
    status_field("Seccomp", "seccomp");
    char cwd[4096];
    printf("cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : "(unreachable)");

    /* Descriptors other than the standard three. */
    char fds[512] = "";
    DIR *fdd = opendir("/proc/self/fd");
    struct dirent *e;
    while (fdd && (e = readdir(fdd))) {
        int n = atoi(e->d_name);
        if (e->d_name[0] == '.' || n <= 2 || n == dirfd(fdd)) continue;
        strncat(fds, e->d_name, sizeof fds - strlen(fds) - 2);
        strcat(fds, ",");
    }
    if (fdd) closedir(fdd);
    printf("extra_fds=%s\n", fds[0] ? fds : "none");

    mkdir("/tmp", 01777);
    mkdir("/tmp/probe-mnt", 0755);
    verdict("mount_tmpfs", mount("none", "/tmp/probe-mnt", "tmpfs", 0, NULL));
    umount2("/tmp/probe-mnt", MNT_DETACH);
    /* The release_agent escape starts with a cgroup v1 mount of its own. */
    verdict("mount_cgroup", mount("cgroup", "/tmp/probe-mnt", "cgroup", 0, "memory"));
    umount2("/tmp/probe-mnt", MNT_DETACH);
    writable("release_agent", "/sys/fs/cgroup/memory/release_agent");
    writable("release_agent_unified", "/sys/fs/cgroup/release_agent");
    verdict("remount_sys_rw", mount(NULL, "/sys", NULL, MS_REMOUNT | MS_BIND, NULL));
    verdict("remount_proc_sys_rw", mount(NULL, "/proc/sys", NULL, MS_REMOUNT | MS_BIND, NULL));
    verdict("unshare_user", unshare(CLONE_NEWUSER));
    verdict("unshare_mount", unshare(CLONE_NEWNS));
    verdict("unshare_net", unshare(CLONE_NEWNET));
    verdict("keyctl", syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, "probe"));
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 4;
    attr.max_entries = 1;
    verdict("bpf", syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
    writable("proc_sys_write", "/proc/sys/kernel/hostname");
    writable("sysrq_trigger_write", "/proc/sysrq-trigger");
    writable("sys_write", "/sys/kernel/profiling");
    masked("kcore", "/proc/kcore");
    masked("proc_keys", "/proc/keys");
    masked("timer_list", "/proc/timer_list");
    masked("sched_debug", "/proc/sched_debug");
    DIR *fw = opendir("/sys/firmware");
    int fw_entries = 0;
    while (fw && (e = readdir(fw)))
        if (e->d_name[0] != '.') fw_entries++;
    if (fw) closedir(fw);
    printf("sys_firmware=%s\n", fw_entries ? "visible" : "masked");

    if (block) {
        unsigned maj = 0, min = 0;
        sscanf(block, "%u:%u", &maj, &min);
        unlink("/tmp/probe-blk");
        int made = mknod("/tmp/probe-blk", S_IFBLK | 0600, makedev(maj, min));
        int fd = made == 0 ? open("/tmp/probe-blk", O_RDONLY) : -1;
        char sector[512];
        verdict("block_device_read", fd >= 0 && read(fd, sector, sizeof sector) > 0 ? 0 : -1);
        if (fd >= 0) close(fd);
        unlink("/tmp/probe-blk");
        /* A node on the tmpfs /dev too. */
        made = mknod("/dev/probe-blk", S_IFBLK | 0600, makedev(maj, min));
        fd = made == 0 ? open("/dev/probe-blk", O_RDONLY) : -1;
        verdict("dev_block_device_read", fd >= 0 && read(fd, sector, sizeof sector) > 0 ? 0 : -1);
        if (fd >= 0) close(fd);
        unlink("/dev/probe-blk");
    }
    /* Needs CAP_NET_ADMIN: setting lo's MTU to what it is. */
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (ioctl(s, SIOCGIFMTU, &ifr) == 0)
        verdict("net_admin", ioctl(s, SIOCSIFMTU, &ifr));
    close(s);
    /* Whether the namespace has a way out (a default route). */
    FILE *route = fopen("/proc/net/route", "r");
    char rline[256], ifn[32];
    unsigned dest, gw;
    int has_default = 0;
    while (route && fgets(rline, sizeof rline, route))
        if (sscanf(rline, "%31s %x %x", ifn, &dest, &gw) == 3 && dest == 0) has_default = 1;
    if (route) fclose(route);
    printf("default_route=%s\n", has_default ? "present" : "absent");
    if (port) {
        connect_to("host_loopback", "127.0.0.1", port);
    }
    if (secret) secret_scan(secret);
    char cmd[256] = "";
    int fd = open("/proc/1/cmdline", O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, cmd, sizeof cmd - 1) : 0;
    if (fd >= 0) close(fd);
    printf("pid1=%s\n", n > 0 ? cmd : "?");
    return 0;
}
