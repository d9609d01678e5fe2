#if canImport(Glibc)
import Glibc
#endif
import CTickwireSys

/// How a thread waits for the ring: for a consumer, for events to be published; for a producer, for a blocking
/// consumer to free a slot.
///
/// On a 2-core machine at most two threads may spin; every other thread should yield or park.
public enum WaitStrategy: Sendable, Equatable {
    /// Spins on the cursor with a CPU pause: the lowest hop latency, one core burnt while idle.
    case busySpin
    /// Spins briefly, then `sched_yield`s between checks: lets other threads run, still polls while idle.
    case yield
    /// Spins briefly, then sleeps on a futex until the other side wakes it: burns no CPU while idle, costs a
    /// wake-up (a few microseconds) on the first event after a quiet spell.
    case park
    /// Sleeps `nanoseconds` at a time whenever it has caught up, without spinning first and without asking the
    /// other side for a wake-up: the publishing thread never pays a system call or a barrier for this waiter, and
    /// each wake-up finds a batch. For consumers that want throughput, not latency (the store writer, alerts):
    /// an event waits at most one sleep (plus the kernel's timer slack, 50 µs by default) before it is seen.
    /// `close` and `removeConsumer` still wake it at once. LMAX Disruptor's `SleepingWaitStrategy` is the model.
    case sleep(nanoseconds: Int64)
}

/// What a consumer may cost the producer.
public enum ConsumerPolicy: Sendable {
    /// Never holds the producer back. When lapped it receives a GAP event naming exactly the lost sequences,
    /// then the last-value cache's entries, and continues from the head (market-data subscribers).
    case lossy
    /// Sees every event: the producer waits for it when it is a full ring behind, and counts each such stall
    /// (the store writer, the journal publisher).
    case blocking
}

/// Whether one thread or several publish into the ring.
public enum ProducerMode: Sendable {
    /// One publishing thread: claiming a slot is a plain store, no read-modify-write.
    case single
    /// Several publishing threads: a fetch-add claims slots, and each publisher waits its turn to make them
    /// visible, so consumers still see sequences in order.
    case multi
}

/// Pauses taken by the spin phase of `.yield` and `.park` before they yield or sleep: about 6 µs here (a pause is
/// ~25 ns), long enough to catch the next batch of a busy feed without a system call. 1,024 measured 6% less of the
/// daemon's CPU per message at full load in one A/B of 8 pairs and nothing in another of 10 (an adaptive 256-1,024
/// spin): within this VM's noise, and a parked publisher at 20k msgs/s would spin half a core.
@usableFromInline let spinsBeforeBlocking = 256

@inlinable @inline(__always)
func relax() { tw_cpu_relax() }

@inline(__always)
func yieldThread() { _ = sched_yield() }
