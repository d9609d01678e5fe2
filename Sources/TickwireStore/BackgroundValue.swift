import Synchronization
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A value computed on a thread of its own, or on the calling thread when no thread can be started; `value`
/// waits for it. The body (and what it captured) is let go as soon as it has run; a value never waited for lets
/// its thread end by itself.
final class BackgroundValue<T>: @unchecked Sendable {
    private final class Slot { var value: T? }
    private let slot = Slot()
    private let thread: BackgroundThread

    init(_ body: @escaping () -> T) {
        let slot = self.slot
        thread = BackgroundThread { slot.value = body() }
    }

    /// Waits for the thread the first time (its exit orders its writes before this read).
    var value: T {
        thread.join()
        return slot.value!
    }
}

/// The thread under `BackgroundValue` (not generic: the compiler's sendability pass crashed on a generic class
/// starting a pthread in its initializer).
private final class BackgroundThread: @unchecked Sendable {
    private var thread = pthread_t()
    private var started = false
    private var body: (() -> Void)?
    private let joined = Mutex(false)

    init(_ body: @escaping () -> Void) {
        self.body = body
        let box = Unmanaged.passRetained(self).toOpaque()
        started = pthread_create(&thread, nil, { arg in
            let me = Unmanaged<BackgroundThread>.fromOpaque(arg!).takeRetainedValue()
            me.body!()
            me.body = nil
            return nil
        }, box) == 0
        if !started {
            Unmanaged<BackgroundThread>.fromOpaque(box).release()
            body()
            self.body = nil
        }
    }

    deinit {
        // This may run on the thread itself, holding the last reference.
        if started && !joined.withLock({ $0 }) { pthread_detach(thread) }
    }

    func join() {
        joined.withLock { joined in
            if started && !joined { pthread_join(thread, nil); joined = true }
        }
    }
}
