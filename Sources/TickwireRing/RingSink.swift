import TickwireCore

/// The `EventSink` a source pushes into when it feeds the ring: each `emit` publishes one event.
///
/// Sources emit one event at a time from their own thread; with `.single` producer mode that thread must be the
/// only publisher. The ring stamps the sequence; the sink only forwards.
public final class RingSink: EventSink {
    public let subjects: SubjectTable
    public let ring: BroadcastRing
    /// Stamped on every event as `Event.source`: which of the daemon's sources produced it.
    public let source: UInt16

    public init(ring: BroadcastRing, subjects: SubjectTable, source: UInt16 = 0) {
        self.ring = ring
        self.subjects = subjects
        self.source = source
    }

    @inlinable
    public func emit(_ event: Event) {
        var e = event
        e.source = source
        ring.publish(e)
    }

    /// One claim, one publishing store and at most one wake-up per `maxPublishBatch` events.
    public func emit(batch: UnsafeBufferPointer<Event>) {
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
    }
}
