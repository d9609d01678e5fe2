#if canImport(Glibc)
import Glibc
#endif

/// A value guarded by a plain pthread mutex, for the cold paths (attaching consumers, editing subscriptions).
///
/// Not `Synchronization.Mutex`: on Linux that is a priority-inheritance futex, slow under contention, and its
/// lock lives in the uninstrumented standard library, so ThreadSanitizer cannot see it order the accesses it
/// guards and reports false races. ThreadSanitizer intercepts `pthread_mutex_lock`.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    public init(_ value: Value) {
        self.value = value
        mutex = .allocate(capacity: 1)
        precondition(pthread_mutex_init(mutex, nil) == 0, "pthread_mutex_init failed")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
