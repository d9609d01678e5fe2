#ifndef TICKWIRE_SYS_H
#define TICKWIRE_SYS_H
// Typed wrappers for the few variadic or macro-only system calls Swift cannot import directly.
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/// futex(FUTEX_WAIT_PRIVATE): sleeps while *addr == expected, at most timeout_ns (<0: forever).
/// Returns 0 on wake, -1 with errno (EAGAIN when *addr != expected, ETIMEDOUT, EINTR).
int tw_futex_wait(uint32_t *addr, uint32_t expected, int64_t timeout_ns);
/// futex(FUTEX_WAKE_PRIVATE): wakes up to count waiters; returns how many were woken.
int tw_futex_wake(uint32_t *addr, int count);

/// open(2) with an explicit mode.
int tw_open(const char *path, int flags, unsigned mode);
/// fcntl(F_SETFL, O_NONBLOCK) on or off.
int tw_set_nonblocking(int fd, int on);
/// fcntl(F_GETFL).
int tw_get_flags(int fd);

/// Registers this process for membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED); returns 0 when available.
int tw_membarrier_register(void);
/// Makes every thread of this process execute a full memory barrier before returning (the slow side of an
/// asymmetric fence: the fast side then needs only a compiler barrier). Call only after registering.
void tw_membarrier(void);
/// Pins the calling thread to one CPU; returns 0 or an errno.
int tw_pin_thread(int cpu);
/// Lets the calling thread run on every CPU again; returns 0 or an errno.
int tw_unpin_thread(void);
/// Names the calling thread for top -H, perf and gdb (cut to 15 bytes); returns 0 or an errno.
int tw_set_thread_name(const char *name);
/// Restricts the calling thread to the CPUs in `cpus` (`count` of them): 0, or an errno (EINVAL: none of them may
/// run this process's threads, or one is out of range).
int tw_set_thread_cpus(const int *cpus, int count);
/// Sets the calling thread's nice value (lower runs first under CFS); returns 0 or an errno (EACCES/EPERM
/// without CAP_SYS_NICE when lowering it).
int tw_set_thread_nice(int nice);
/// Puts the calling thread's disk I/O in the idle class (served when no other I/O waits, with aging); returns 0
/// or an errno.
int tw_set_thread_io_idle(void);
/// Starts writeback of [offset, offset+count) and waits for it (sync_file_range WAIT_BEFORE|WRITE|WAIT_AFTER):
/// the data reaches the device without a file-system journal commit. Returns 0 or an errno.
int tw_write_back_range(int fd, int64_t offset, int64_t count);
/// The id of the calling thread (gettid).
int tw_gettid(void);
/// Monotonic and realtime clocks in nanoseconds.
int64_t tw_monotonic_ns(void);
int64_t tw_realtime_ns(void);
/// rdtsc-free pause for spin loops.
void tw_cpu_relax(void);
/// The terminal's size via ioctl(TIOCGWINSZ); returns 0 or -1.
int tw_terminal_size(int fd, int *rows, int *cols);

/// posix_spawn of `path` with stdin from /dev/null, stdout and stderr appended to the given files, and every other
/// descriptor closed in the child (so a child never inherits another's sockets or pipes). Returns 0 or an errno.
int tw_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             const char *stdout_path, const char *stderr_path);

/// CRC32C (Castagnoli) of `len` bytes, continuing from `crc` (0 to start). Uses SSE4.2 when the CPU has it,
/// slicing-by-8 tables otherwise; both give the same value (the iSCSI/ext4 CRC, final XOR included).
uint32_t tw_crc32c(uint32_t crc, const void *data, size_t len);
/// The slicing-by-8 path alone (tests compare it with the hardware path).
uint32_t tw_crc32c_sw(uint32_t crc, const void *data, size_t len);

/// Asks for the cache line at `p` ahead of a store to it (a hint: any address is safe).
static inline void tw_prefetch_write(const void *p) { __builtin_prefetch(p, 1, 3); }

/// What the kernel still holds to send on a connected socket: for TCP, `notsent` is the bytes queued but not yet
/// sent (TCP_INFO tcpi_notsent_bytes: non-zero while the peer's window is shut) and `unacked` the bytes sent but
/// not acknowledged; for other sockets `notsent` is SIOCOUTQ and `unacked` 0. Returns 0 or an errno.
int tw_socket_send_backlog(int fd, uint32_t *notsent, uint32_t *unacked);
/// The local port and the peer's address of a connected TCP socket, as "ADDRESS:PORT" text in `peer` (cut to
/// `capacity` bytes). Returns 0, or an errno (ENOTSOCK, ENOTCONN, EAFNOSUPPORT for a non-IP socket).
int tw_socket_endpoints(int fd, int *local_port, char *peer, size_t capacity);

#endif
