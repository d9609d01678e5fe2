#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A pthread mutex with four condition variables, for threads that wait for each other's work: the journal's
/// appenders and sync threads, an output's write-behind thread, a join's helper. A plain (non-priority-inheritance)
/// mutex, as `Locked` (why not `Synchronization.Mutex`: there).
package final class LockWithConditions: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private static let conditions = 4
    private let conds = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: LockWithConditions.conditions)

    package init() {
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)   // timed waits use tw_monotonic_ns deadlines
        for i in 0..<LockWithConditions.conditions { pthread_cond_init(conds + i, &attr) }
        pthread_condattr_destroy(&attr)
    }

    deinit {
        for i in 0..<LockWithConditions.conditions { pthread_cond_destroy(conds + i) }
        pthread_mutex_destroy(mutex)
        conds.deallocate(); mutex.deallocate()
    }

    package func lock() { pthread_mutex_lock(mutex) }
    package func unlock() { pthread_mutex_unlock(mutex) }
    /// Waits on condition 0, 1 or 2; the mutex must be held.
    package func wait(_ which: Int) { pthread_cond_wait(conds + which, mutex) }
    /// Waits on a condition until signalled or until the monotonic clock reads `deadline` (ns).
    package func wait(_ which: Int, until deadline: Int64) {
        var ts = timespec(tv_sec: Int(deadline / 1_000_000_000), tv_nsec: Int(deadline % 1_000_000_000))
        _ = pthread_cond_timedwait(conds + which, mutex, &ts)
    }
    package func signal(_ which: Int) { pthread_cond_signal(conds + which) }
    package func broadcast(_ which: Int) { pthread_cond_broadcast(conds + which) }
}
