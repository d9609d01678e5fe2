import TickwireCore

/// Where a source's thread publishes its counters for other threads (metrics, `tickwire stats`) to read.
///
/// The source counts in plain local integers on its hot path and copies them here every few thousand
/// messages and when it returns: a lock per publish, none per message.
public final class CounterBoard: Sendable {
    private let values = Locked<[(name: String, value: UInt64)]>([])
    public init() {}
    public func publish(_ pairs: [(name: String, value: UInt64)]) { values.withLock { $0 = pairs } }
    public func snapshot() -> [(name: String, value: UInt64)] { values.withLock { $0 } }
}
