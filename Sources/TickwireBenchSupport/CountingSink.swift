import TickwireCore

/// A sink that only counts, for measuring the books without the cost of a consumer.
public final class CountingSink: EventSink {
    public let subjects: SubjectTable
    public private(set) var count = 0
    public init(subjects: SubjectTable = SubjectTable()) { self.subjects = subjects }
    public func emit(_ event: Event) { count &+= 1 }
}
