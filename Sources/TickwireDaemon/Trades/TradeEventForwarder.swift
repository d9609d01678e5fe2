import Foundation
import TickwireCore
import TickwireRing

/// Accepted trades on their way to the ring (market data, the store), off the trade service's thread.
///
/// The ring's `publish` waits while a blocking consumer (the store writer, the wire) is a full ring behind; the
/// trade service appends here and goes on answering, so an acknowledgement never waits for a ring slot. This
/// thread publishes in the order the service appended. Unbounded, as trades are few beside market data: the queue
/// holds only what arrives while the ring is full.
final class TradeEventForwarder: @unchecked Sendable {
    private let queue = Locked<(events: [Event], closed: Bool)>(([], false))
    private let ready = DispatchSemaphore(value: 0)

    /// Queues `events` (the trades one pass of the trade service found durable) under one lock, and wakes the
    /// publishing thread only if the queue was empty: once a group commit at most, not once a trade.
    func push(_ events: some Collection<Event>) {
        guard !events.isEmpty else { return }
        let wasEmpty = queue.withLock { q -> Bool in
            let was = q.events.isEmpty
            q.events.append(contentsOf: events)
            return was
        }
        if wasEmpty { ready.signal() }
    }

    /// Publishes what is pushed until `close`, then what is left, calling `afterPublish` after each batch.
    func run(_ ring: BroadcastRing, afterPublish: () -> Void) {
        var batch: [Event] = []
        while true {
            ready.wait()
            let closed = queue.withLock { q -> Bool in
                swap(&batch, &q.events)
                return q.closed
            }
            // One claim (one locked add on the daemon's multi-producer ring) per `maxPublishBatch` events.
            batch.withUnsafeBufferPointer { events in
                var done = 0
                while done < events.count { done += ring.publish(contentsOf: UnsafeBufferPointer(rebasing: events[done...])) }
            }
            if !batch.isEmpty { afterPublish() }
            batch.removeAll(keepingCapacity: true)
            if closed { return }
        }
    }

    /// Ends `run` once what was pushed before is published (call after the trade service stopped).
    func close() {
        queue.withLock { $0.closed = true }
        ready.signal()
    }
}
