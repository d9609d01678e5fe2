import Synchronization
import TickwireCore
import TickwireNATS

/// A source that takes Tickwire market data from a NATS cluster (another daemon's `--nats` output, or any NATS
/// publisher following docs/PROTOCOL.md) into this daemon: an edge daemon near its traders, with its own ring,
/// in-process subscribers, ZeroMQ and store.
///
/// Spec: `nats:URL[,URL…]` (everything, `>`) or `nats:URL[,URL…]#PATTERN`. As with `zmq:`, events keep their
/// times and bodies and this daemon numbers them itself. Nothing from the wire is trusted: a subject that is not a
/// Tickwire subject and a payload that does not decode are counted by kind (`malformed_subject`,
/// `malformed_payload`) and skipped. The upstream daemon's `SYS.NATS.GAP.*` notices are not relayed as events:
/// the messages they report are counted in `upstream_lost`, and messages the client library dropped at its
/// pending limit in `dropped`. Losing every server is never fatal: the connection keeps trying.
public final class NATSRelaySource: EventSource {
    public let name: String
    let servers: [String]
    let pattern: SubjectPattern?
    private let received = Atomic<UInt64>(0)
    private let malformedSubject = Atomic<UInt64>(0)
    private let malformedPayload = Atomic<UInt64>(0)
    private let upstreamLost = Atomic<UInt64>(0)
    private let dropped = Atomic<UInt64>(0)
    private let log: @Sendable (String) -> Void

    public init(servers: [String], pattern: SubjectPattern? = nil, log: @escaping @Sendable (String) -> Void = { _ in }) {
        name = "nats:\(servers.joined(separator: ","))"
        self.servers = servers
        self.pattern = pattern
        self.log = log
    }

    static let batchSize = 64
    /// What the client may hold for this source before it drops (a burst the ring takes in a moment).
    static let pendingLimit: Int32 = 1_000_000
    static let gapNoticePrefix = Array("SYS.NATS.GAP.".utf8)

    public func counters() -> [(name: String, value: UInt64)] {
        let subject = malformedSubject.load(ordering: .relaxed), payload = malformedPayload.load(ordering: .relaxed)
        return [("events", received.load(ordering: .relaxed)), ("malformed", subject + payload),
                ("malformed_subject", subject), ("malformed_payload", payload),
                ("upstream_lost", upstreamLost.load(ordering: .relaxed)), ("dropped", dropped.load(ordering: .relaxed))]
    }

    public func run(into sink: EventSink, stop: StopSignal) throws {
        var options = NATSConnection.Options(servers: servers)
        options.name = "tickwire-relay"
        options.maxReconnect = -1
        options.retryOnFailedConnect = true
        options.maxPendingMessages = Self.pendingLimit
        let log = self.log, name = self.name
        options.onEvent = { event in
            switch event {
            case .disconnected: log("\(name): disconnected; reconnecting")
            case .reconnected(let url): log("\(name): reconnected to \(url)")
            case .error(let e): log("\(name): \(e)")
            case .closed: break
            }
        }
        let connection = try NATSConnection(options)
        defer { connection.close() }
        let subscription = try connection.subscribeSync(pattern?.text ?? ">", pendingLimit: Self.pendingLimit)
        var interner = SubjectInterner(table: sink.subjects)
        let batch = UnsafeMutableBufferPointer<Event>.allocate(capacity: Self.batchSize)
        defer { batch.deallocate() }
        var batched = 0
        func flush() {
            if batched > 0 { sink.emit(batch: UnsafeBufferPointer(rebasing: batch[0..<batched])) }
            received.add(UInt64(batched), ordering: .relaxed)
            batched = 0
        }
        var lastDropped: Int64 = 0
        while !stop.isRaised {
            // Wait for one message, then take what is already waiting into the same batch.
            var timeout: Int64 = 100
            while subscription.next(timeoutMs: timeout, { take($0, &interner, batch, &batched) }) != nil {
                timeout = 0
                if batched == Self.batchSize { flush() }
            }
            flush()
            let d = subscription.dropped
            if d > lastDropped { dropped.add(UInt64(d - lastDropped), ordering: .relaxed); lastDropped = d }
        }
    }

    @inline(__always)
    private func take(_ m: NATSMessage, _ interner: inout SubjectInterner, _ batch: UnsafeMutableBufferPointer<Event>,
                      _ batched: inout Int) {
        // nil: outside this source's pattern or a notice (skipped); .some(nil): not a valid subject (malformed).
        let looked: SubjectID?? = m.withSubjectBytes { bytes in
            if bytes.starts(with: Self.gapNoticePrefix) {
                if let e = m.withBytes({ try? WireCodec.decode($0).event }), e.kind == .gap {
                    upstreamLost.add(e.gapBody.count, ordering: .relaxed)
                }
                return nil
            }
            return .some(interner.intern(bytes))
        }
        guard let looked else { return }
        guard let id = looked else { malformedSubject.add(1, ordering: .relaxed); return }
        guard var event = m.withBytes({ try? WireCodec.decode($0).event }) else {
            malformedPayload.add(1, ordering: .relaxed)
            return
        }
        event.subjectID = id
        batch[batched] = event
        batched += 1
    }
}
