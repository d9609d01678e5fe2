import TickwireCore

/// The `EventSink` a source pushes into when it feeds the ring: each `emit` publishes one event.
///
/// Sources emit one event at a time from their own thread; with `.single` producer mode that thread must be the
/// only publisher. The ring stamps the sequence; the sink only forwards.
public final class RingSink: EventSink {
    public let subjects: SubjectTable
    public let ring: BroadcastRing

    public init(ring: BroadcastRing, subjects: SubjectTable) {
        self.ring = ring
        self.subjects = subjects
    }

    @inlinable
    public func emit(_ event: Event) { ring.publish(event) }
}
