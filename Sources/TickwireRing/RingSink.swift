import TickwireCore

/// The `EventSink` a source pushes into when it feeds the ring.
///
/// A sink that `collects` keeps what `emit` hands it, stamped, in its own buffer and publishes it as one batch —
/// one claim, one publishing store, at most one wake-up — when the buffer is full (`batchLimit` events) or the
/// source calls `flush` (its input has nothing more for now): on a `.multi` ring a source then pays one locked
/// add per batch, not per event. Only a source that flushes whenever it would wait (`EventSource.flushesSink`)
/// may feed a collecting sink, and whoever runs the source flushes once more after `run` returns. A sink that
/// does not collect publishes each event as it comes.
///
/// Used by one thread, the source's; with `.single` producer mode that thread must be the only publisher. The
/// ring stamps the sequence; the sink only forwards.
public final class RingSink: EventSink {
    public let subjects: SubjectTable
    public let ring: BroadcastRing
    /// Stamped on every event as `Event.source`: which of the daemon's sources produced it.
    public let source: UInt16
    /// Whether `emit` collects events until `flush` or a full batch.
    public let collects: Bool
    /// The most events collected before they are published: 64 (the relay sources' batch), or the ring's
    /// `maxPublishBatch` if smaller. An event waits at most for the source to produce this many more.
    public let batchLimit: Int
    /// Called on this sink's thread after each publish into the ring, with whether the batch was full (the source
    /// had more input waiting): the daemon sends what waits to ZeroMQ from there when no other thread is sending
    /// and the source is not flooding.
    @usableFromInline let afterPublish: ((_ full: Bool) -> Void)?
    @usableFromInline let pending: UnsafeMutablePointer<Event>
    @usableFromInline var pendingCount = 0

    /// - Parameters:
    ///   - collects: collect emitted events until `flush` (the source must flush whenever it waits).
    ///   - afterPublish: called after each publish into the ring, on the sink's thread, with whether the batch
    ///     was full (`batchLimit` events or more).
    public init(ring: BroadcastRing, subjects: SubjectTable, source: UInt16 = 0, collects: Bool = false,
                afterPublish: ((_ full: Bool) -> Void)? = nil) {
        self.ring = ring
        self.subjects = subjects
        self.source = source
        self.collects = collects
        self.afterPublish = afterPublish
        batchLimit = Swift.min(64, ring.maxPublishBatch)
        pending = .allocate(capacity: batchLimit)
    }

    deinit {
        precondition(pendingCount == 0, "a RingSink released with \(pendingCount) events never flushed")
        pending.deallocate()
    }

    @inlinable
    public func emit(_ event: Event) {
        var e = event
        e.source = source
        guard collects else {
            ring.publish(e)
            afterPublish?(false)
            return
        }
        (pending + pendingCount).initialize(to: e)
        pendingCount &+= 1
        if pendingCount == batchLimit { flush() }
    }

    /// Publishes what `emit` collected (nothing when the sink does not collect).
    public func flush() {
        guard pendingCount > 0 else { return }
        var done = 0
        while done < pendingCount {
            done += ring.publish(contentsOf: UnsafeBufferPointer(start: pending + done, count: pendingCount - done))
        }
        let full = pendingCount >= batchLimit
        pendingCount = 0
        afterPublish?(full)
    }

    /// One claim, one publishing store and at most one wake-up per `maxPublishBatch` events, after what was
    /// collected before.
    public func emit(batch: UnsafeBufferPointer<Event>) {
        flush()
        var done = 0
        while done < batch.count {
            let base = done
            done += ring.publishBatch(count: batch.count - base) { slots in
                for k in 0..<slots.count {
                    var e = batch[base + k]
                    e.source = source
                    slots[k] = e
                }
            }
        }
        if batch.count > 0 { afterPublish?(batch.count >= batchLimit) }
    }
}
