#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A value guarded by a plain pthread mutex: the project's one lock, for the cold paths (interning a subject,
/// attaching a consumer, editing subscriptions, a desk's positions).
///
/// Not `Synchronization.Mutex`: on Linux that is a priority-inheritance futex, slow under contention, and its
/// lock lives in the uninstrumented standard library, so ThreadSanitizer cannot see it order the accesses it
/// guards and reports false races (a CI run reported 7 in HubTests). ThreadSanitizer intercepts
/// `pthread_mutex_lock`. Not `NSLock` either: that would pull Foundation into every module. Never on the ring's
/// publish or poll path, which takes no lock at all.
package final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    package init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        precondition(pthread_mutex_init(mutex, nil) == 0, "pthread_mutex_init failed")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock.
    /// - warning: `body` must not call `withLock` on the same lock (the mutex is not recursive).
    package func withLock<R, E: Error>(_ body: (inout Value) throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
