#define _GNU_SOURCE
#include "tickwire_sys.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <spawn.h>
#include <linux/membarrier.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>

int tw_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns) {
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000LL;
        ts.tv_nsec = timeout_ns % 1000000000LL;
        tsp = &ts;
    }
    return (int)syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, tsp, NULL, 0);
}

int tw_futex_wake(uint32_t *addr, int count) {
    return (int)syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

int tw_open(const char *path, int flags, unsigned mode) { return open(path, flags, (mode_t)mode); }

int tw_get_flags(int fd) { return fcntl(fd, F_GETFL); }

int tw_set_nonblocking(int fd, int on) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) return -1;
    flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
    return fcntl(fd, F_SETFL, flags);
}

int tw_pin_thread(int cpu) { return tw_set_thread_cpus(&cpu, 1); }

int tw_membarrier_register(void) {
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED)) return -1;
    return syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0 ? 0 : -1;
}

void tw_membarrier(void) { syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0); }

int tw_unpin_thread(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    long n = sysconf(_SC_NPROCESSORS_CONF);
    for (long i = 0; i < n && i < CPU_SETSIZE; i++) CPU_SET(i, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int tw_set_thread_name(const char *name) {
    char buf[16];
    strncpy(buf, name, sizeof buf - 1);
    buf[sizeof buf - 1] = 0;
    return pthread_setname_np(pthread_self(), buf);
}

int tw_gettid(void) { return (int)syscall(SYS_gettid); }

int tw_set_thread_cpus(const int *cpus, int count) {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < count; i++) {
        if (cpus[i] < 0 || cpus[i] >= CPU_SETSIZE) return EINVAL;
        CPU_SET(cpus[i], &set);
    }
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int tw_write_back_range(int fd, int64_t offset, int64_t count) {
    unsigned flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    return sync_file_range(fd, (off_t)offset, (off_t)count, flags) == 0 ? 0 : errno;
}

int tw_set_thread_io_idle(void) {
    // ioprio_set(IOPRIO_WHO_PROCESS, tid, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0)); glibc has no wrapper.
    const int who_process = 1, class_idle = 3, class_shift = 13;
    return syscall(SYS_ioprio_set, who_process, (int)syscall(SYS_gettid), class_idle << class_shift) == 0 ? 0 : errno;
}

int tw_set_thread_nice(int nice) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) == 0 ? 0 : errno;
}

int64_t tw_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int64_t tw_realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void tw_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

int tw_terminal_size(int fd, int *rows, int *cols) {
    struct winsize ws;
    if (ioctl(fd, TIOCGWINSZ, &ws) != 0) return -1;
    *rows = ws.ws_row;
    *cols = ws.ws_col;
    return 0;
}

int tw_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             const char *stdout_path, const char *stderr_path) {
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) return rc;
    rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0) rc = posix_spawn_file_actions_addopen(&fa, 1, stdout_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (rc == 0) rc = posix_spawn_file_actions_addopen(&fa, 2, stderr_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (rc == 0) rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    if (rc == 0) rc = posix_spawn(pid, path, &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

// CRC32C: the journal checks every record and the store every append-log block and column file with it.
// MARK: CRC32C


static uint32_t crc32c_table[8][256];
static int crc32c_hw = -1;

static void crc32c_init(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc32c_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc32c_table[0][n];
        for (int t = 1; t < 8; t++) {
            c = crc32c_table[0][c & 0xff] ^ (c >> 8);
            crc32c_table[t][n] = c;
        }
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    crc32c_hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
    crc32c_hw = 0;
#endif
}

static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;

uint32_t tw_crc32c_sw(uint32_t crc, const void *data, size_t len) {
    pthread_once(&crc32c_once, crc32c_init);
    const uint8_t *p = data;
    uint32_t c = ~crc;
    while (len >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, p, 8);  // little-endian hosts only (x86_64, aarch64)
        uint32_t lo = (uint32_t)w ^ c, hi = (uint32_t)(w >> 32);
        c = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
            crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
            crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
            crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) c = crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

#if defined(__x86_64__)
/* The crc32 instruction takes 3 cycles and can start one a cycle: one chain uses a third of it. Long inputs run
 * three chains over three adjacent pieces at once, then join them: the CRC register is linear, so the CRC of A
 * then B is (the CRC of A moved past |B| zero bytes) xor (B's CRC from zero). Moving past a fixed number of zero
 * bytes is linear too: four tables of 256 (one per byte of the register), built once from the instruction itself. */
enum { CRC_LONG = 8192, CRC_SHORT = 256 };
static uint32_t crc32c_long[4][256], crc32c_short[4][256];

__attribute__((target("sse4.2")))
static uint32_t crc32c_zeros(uint32_t c, size_t len) {
    uint64_t r = c;
    for (size_t i = 0; i < len; i += 8) r = __builtin_ia32_crc32di(r, 0);
    return (uint32_t)r;
}

static void crc32c_shift_table(uint32_t table[4][256], size_t len) {
    uint32_t bit[32];
    for (int b = 0; b < 32; b++) bit[b] = crc32c_zeros(1u << b, len);
    for (int k = 0; k < 4; k++)
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t r = 0;
            for (int b = 0; b < 8; b++) if (v & (1u << b)) r ^= bit[8 * k + b];
            table[k][v] = r;
        }
}

static void crc32c_hw_init(void) {
    crc32c_shift_table(crc32c_long, CRC_LONG);
    crc32c_shift_table(crc32c_short, CRC_SHORT);
}

static pthread_once_t crc32c_hw_once = PTHREAD_ONCE_INIT;

static inline uint32_t crc32c_shift(uint32_t table[4][256], uint32_t c) {
    return table[0][c & 0xff] ^ table[1][(c >> 8) & 0xff] ^ table[2][(c >> 16) & 0xff] ^ table[3][c >> 24];
}

/* Three chains over [p, p + n), [p + n, p + 2n), [p + 2n, p + 3n), joined into c. */
__attribute__((target("sse4.2")))
static inline uint64_t crc32c_three(uint64_t c, const uint8_t *p, size_t n, uint32_t table[4][256]) {
    uint64_t c1 = 0, c2 = 0;
    for (size_t i = 0; i < n; i += 8) {
        uint64_t w0, w1, w2;
        __builtin_memcpy(&w0, p + i, 8);
        __builtin_memcpy(&w1, p + n + i, 8);
        __builtin_memcpy(&w2, p + 2 * n + i, 8);
        c = __builtin_ia32_crc32di(c, w0);
        c1 = __builtin_ia32_crc32di(c1, w1);
        c2 = __builtin_ia32_crc32di(c2, w2);
    }
    c = crc32c_shift(table, (uint32_t)c) ^ (uint32_t)c1;
    return crc32c_shift(table, (uint32_t)c) ^ (uint32_t)c2;
}

__attribute__((target("sse4.2")))
static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p, size_t len) {
    uint64_t c = ~crc;
    if (len >= 3 * CRC_SHORT) {
        pthread_once(&crc32c_hw_once, crc32c_hw_init);
        for (; len >= 3 * CRC_LONG; p += 3 * CRC_LONG, len -= 3 * CRC_LONG) c = crc32c_three(c, p, CRC_LONG, crc32c_long);
        for (; len >= 3 * CRC_SHORT; p += 3 * CRC_SHORT, len -= 3 * CRC_SHORT) c = crc32c_three(c, p, CRC_SHORT, crc32c_short);
    }
    while (len >= 8) {
        uint64_t w;
        __builtin_memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return ~c32;
}
#endif

uint32_t tw_crc32c(uint32_t crc, const void *data, size_t len) {
    pthread_once(&crc32c_once, crc32c_init);
#if defined(__x86_64__)
    if (crc32c_hw) return crc32c_sse42(crc, data, len);
#endif
    return tw_crc32c_sw(crc, data, len);
}

int tw_socket_send_backlog(int fd, uint32_t *notsent, uint32_t *unacked) {
    struct tcp_info info;
    socklen_t len = sizeof info;
    memset(&info, 0, sizeof info);
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0
        && len >= offsetof(struct tcp_info, tcpi_notsent_bytes) + sizeof info.tcpi_notsent_bytes) {
        *notsent = info.tcpi_notsent_bytes;
        *unacked = info.tcpi_unacked;
        return 0;
    }
    int queued = 0;
    if (ioctl(fd, SIOCOUTQ, &queued) != 0) return errno;
    *notsent = (uint32_t)queued;
    *unacked = 0;
    return 0;
}

int tw_socket_endpoints(int fd, int *local_port, char *peer, size_t capacity) {
    struct sockaddr_storage local, remote;
    socklen_t ll = sizeof local, rl = sizeof remote;
    if (getsockname(fd, (struct sockaddr *)&local, &ll) != 0) return errno;
    if (getpeername(fd, (struct sockaddr *)&remote, &rl) != 0) return errno;
    char text[INET6_ADDRSTRLEN];
    int port;
    if (remote.ss_family == AF_INET) {
        struct sockaddr_in *r = (struct sockaddr_in *)&remote;
        inet_ntop(AF_INET, &r->sin_addr, text, sizeof text);
        port = ntohs(r->sin_port);
        *local_port = ntohs(((struct sockaddr_in *)&local)->sin_port);
    } else if (remote.ss_family == AF_INET6) {
        struct sockaddr_in6 *r = (struct sockaddr_in6 *)&remote;
        inet_ntop(AF_INET6, &r->sin6_addr, text, sizeof text);
        port = ntohs(r->sin6_port);
        *local_port = ntohs(((struct sockaddr_in6 *)&local)->sin6_port);
    } else {
        return EAFNOSUPPORT;
    }
    snprintf(peer, capacity, "%s:%d", text, port);
    return 0;
}
