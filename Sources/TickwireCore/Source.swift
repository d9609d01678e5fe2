import Synchronization

/// Where a source puts the events it normalizes. The daemon's sink claims ring slots; `tickwire decode`
/// prints; tests collect. A sink assigns nothing: sequences are the ring's business.
public protocol EventSink: AnyObject {
    /// The table the source interns its subjects in.
    var subjects: SubjectTable { get }
    /// Takes one event. Called from the source's own thread only.
    func emit(_ event: Event)
    /// Takes several events in order, as one `emit` each would; a sink may hand them on at once (the ring
    /// claims their slots and wakes its consumers once). For a source that has several ready at a time.
    func emit(batch: UnsafeBufferPointer<Event>)
    /// The source has nothing more for now (its read came back empty, it is about to wait): a sink that collects
    /// what `emit` hands it passes it on. A source that calls this whenever it would wait says so with
    /// `EventSource.flushesSink`.
    func flush()
}

extension EventSink {
    public func emit(batch: UnsafeBufferPointer<Event>) {
        for e in batch { emit(e) }
    }

    public func flush() {}
}

/// A feed: the simulator, an ITCH file, a MoldUDP64 line pair, a CSV capture.
public protocol EventSource: AnyObject {
    /// A short name for logs, stats and metrics (`sim`, `itch:12302019.NASDAQ_ITCH50`).
    var name: String { get }
    /// Produces events into `sink` until the input ends or `stop` is raised; returns then.
    /// - Throws: the source's typed error when its input is bad and it is configured to stop on errors.
    func run(into sink: EventSink, stop: StopSignal) throws
    /// Counters worth showing (`messages`, `errors`, `unknown_orders`, `gaps`…), read from any thread.
    func counters() -> [(name: String, value: UInt64)]
    /// Whether `run` calls `sink.flush()` before every wait for input (or never waits), so that the sink may
    /// collect emitted events and publish them together. False unless a source says so.
    var flushesSink: Bool { get }
}

extension EventSource {
    public var flushesSink: Bool { false }
}

/// A flag raised once to ask loops on other threads to finish.
public final class StopSignal: Sendable {
    private let raised = Atomic<Bool>(false)
    public init() {}
    public func raise() { raised.store(true, ordering: .releasing) }
    public var isRaised: Bool { raised.load(ordering: .acquiring) }
}

/// A sink that keeps everything, for tests and `tickwire decode`.
public final class CollectingSink: EventSink {
    public let subjects: SubjectTable
    public private(set) var events: [Event] = []
    public init(subjects: SubjectTable = SubjectTable()) { self.subjects = subjects }
    public func emit(_ event: Event) { events.append(event) }
}
