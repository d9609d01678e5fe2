import Foundation
import TickwireCore
import TickwireRing

/// Accepted trades on their way to the ring (market data, the store), off the trade service's thread: this thread
/// also names each trade's subject (`TRADE.<DESK>.<SYMBOL>`, interned once a desk and symbol).
///
/// The ring's `publish` waits while a blocking consumer (the store writer, the wire) is a full ring behind; the
/// trade service appends here and goes on answering, so an acknowledgement never waits for a ring slot. This
/// thread publishes in the order the service appended. Unbounded, as trades are few beside market data: the queue
/// holds only what arrives while the ring is full.
final class TradeEventForwarder: @unchecked Sendable {
    private let queue = Locked<(trades: [DurableTrade], closed: Bool)>(([], false))
    private let ready = DispatchSemaphore(value: 0)
    private let subjects: SubjectTable

    init(subjects: SubjectTable) { self.subjects = subjects }

    /// Queues `trades` (those one pass of the trade service found durable) under one lock, and wakes the
    /// publishing thread only if the queue was empty: once a group commit at most, not once a trade.
    func push(_ trades: [DurableTrade]) {
        guard !trades.isEmpty else { return }
        let wasEmpty = queue.withLock { q -> Bool in
            let was = q.trades.isEmpty
            q.trades.append(contentsOf: trades)
            return was
        }
        if wasEmpty { ready.signal() }
    }

    /// Publishes what is pushed until `close`, then what is left, calling `afterPublish` after each batch.
    func run(_ ring: BroadcastRing, afterPublish: () -> Void) {
        var taken: [DurableTrade] = [], batch: [Event] = []
        var subjectIDs: [DeskSymbol: SubjectID] = [:]
        while true {
            ready.wait()
            let closed = queue.withLock { q -> Bool in
                swap(&taken, &q.trades)
                return q.closed
            }
            for t in taken {
                var e = t.event
                let key = DeskSymbol(desk: t.desk, symbol: t.symbol)
                if let id = subjectIDs[key] {
                    e.subjectID = id
                } else {
                    e.subjectID = subjects.intern(text: t.subject)
                    subjectIDs[key] = e.subjectID
                }
                batch.append(e)
            }
            taken.removeAll(keepingCapacity: true)
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

    private struct DeskSymbol: Hashable { let desk: String, symbol: String }

    /// Ends `run` once what was pushed before is published (call after the trade service stopped).
    func close() {
        queue.withLock { $0.closed = true }
        ready.signal()
    }
}
