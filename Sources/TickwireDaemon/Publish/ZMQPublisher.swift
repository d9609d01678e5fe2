import Synchronization
import TickwireClient
import TickwireCore
import TickwireZMQ

/// The daemon's outbound stage: encodes ring events into the two-frame wire format (docs/PROTOCOL.md) and
/// sends them on a ZeroMQ PUB socket. Used by one thread at a time (the holder of `PublishStage`'s turn);
/// allocates nothing per event.
///
/// ZeroMQ filters by subject prefix at this socket and never blocks it: a subscriber whose queue reaches the
/// high-water mark loses messages, and sees the loss as a jump in `seq` and `subject_seq`.
/// What all subscribers' queues together hold is kept within a memory budget by `PublishBudgetMonitor`, which
/// cuts the longest-stalled subscribers beyond it.
final class ZMQPublisher {
    let socket: ZMQSocket
    let subjects: SubjectTable
    // The sending thread's own state (one at a time, ordered by the turn): exclusivity is not checked at run
    // time (a runtime call pair and a thread-local lookup per access, per event).
    @exclusivity(unchecked) private var sequencer = WireSequencer()
    private let payload = UnsafeMutableRawPointer.allocate(byteCount: WireCodec.payloadSize, alignment: 8)
    /// Sends libzmq refused (counted, never thrown: one bad moment must not stop the feed). Read by metrics.
    let failed = Atomic<UInt64>(0)
    /// Known time to the moment the message is handed to ZeroMQ: the daemon's own latency, sampled on every
    /// `latencySampleEvery`-th event (a clock read per event cost ~1% of the daemon's throughput).
    let latency = LatencyHistogram()
    static let latencySampleEvery: UInt64 = 16
    @exclusivity(unchecked) private var sent: UInt64 = 0

    /// Where each numbered payload is also handed, for the NATS publisher's thread (nil: no NATS). Set before any
    /// thread sends. Like the snapshot fields below, read per event and touched by the turn's holder alone from then
    /// on: exclusivity is not checked at run time (a runtime call and a thread-local lookup per read).
    @exclusivity(unchecked) var natsHandoff: NATSHandoff? = nil

    /// The snapshot socket (REP, docs/PROTOCOL.md "Snapshot") and the last values it answers from, when
    /// `[publish] snapshot_endpoint` is set; served by the turn's holder between batches (`serveSnapshots`).
    @exclusivity(unchecked) var snapshotSocket: ZMQSocket? = nil
    @exclusivity(unchecked) var snapshotValues: PublishedLastValues? = nil

    /// Keeps the subscribers' queues within the memory budget (nil: no budget).
    let budget: PublishBudgetMonitor?
    private var budgetStopped = false

    /// - Parameters:
    ///   - highWaterMark: messages queued per subscriber at most (0: no limit of its own; with a budget, the
    ///     budget's worth). Fixed for the socket's life (see `SubscriberBudget` for why).
    ///   - budgetBytes: what all subscribers' queues together may hold (0: no budget); see `PublishBudgetMonitor`.
    ///   - published: a count at least that of the messages sent so far (the ring's published sequence).
    init(context: ZMQContext, endpoint: String, highWaterMark: Int, budgetBytes: Int = 0, subjects: SubjectTable,
         published: @escaping @Sendable () -> UInt64 = { 0 }, log: @escaping @Sendable (String) -> Void = { _ in }) throws(ZMQError) {
        socket = try context.socket(.pub)
        if budgetBytes > 0 {
            let most = max(1, min(Int(Int32.max), budgetBytes / PublishBudgetMonitor.bytesPerMessage))
            let mark = highWaterMark > 0 ? min(highWaterMark, most) : most
            budget = try PublishBudgetMonitor(socket: socket, context: context, budgetBytes: budgetBytes, mark: mark,
                                              published: published, log: log)
            try socket.setSendHighWaterMark(mark)
        } else {
            budget = nil
            try socket.setSendHighWaterMark(highWaterMark)
        }
        try socket.setLinger(milliseconds: 0)
        try socket.bind(endpoint)
        let bound = socket.lastEndpoint
        if bound.hasPrefix("tcp://"), let colon = bound.lastIndex(of: ":") { budget?.localPort = Int(bound[bound.index(after: colon)...]) }
        self.subjects = subjects
    }

    /// Stops the socket's monitor and lets the budget's thread end (call on the publisher thread, once nothing more is sent).
    func stopBudget() {
        guard let budget, !budgetStopped else { return }
        budgetStopped = true
        try? socket.monitor(nil, events: [])
        budget.finish()
    }

    deinit {
        stopBudget()   // a daemon that failed to start never ran the publisher thread
        payload.deallocate()
    }

    /// Answers the snapshot requests waiting now with what this thread has sent so far (call between batches).
    /// - Parameter standby: this daemon does not hold the market-data lease (active/active): it answers with no
    ///   values, as it publishes none.
    func serveSnapshots(standby: Bool = false) {
        guard let socket = snapshotSocket, let values = snapshotValues else { return }
        while let request = try? socket.receiveMultipart(dontWait: true) {
            let text = String(decoding: request.first ?? [], as: UTF8.self)
            var patterns: [SubjectPattern] = []
            for t in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
                guard let p = try? SubjectPattern(String(t)) else { patterns = []; break }
                patterns.append(p)
            }
            let chunks = patterns.isEmpty || standby ? SnapshotCodec.chunks([]) : values.snapshot(matching: patterns, subjects: subjects)
            _ = try? socket.sendMultipart(chunks)
        }
    }

    /// Sends one event; counts (never throws on) a failed send so one bad moment cannot stop the feed.
    func send(_ event: Event) {
        let subject = subjects.entry(event.subjectID)
        let (seq, subjectSeq) = sequencer.next(event.subjectID, subject: subject)
        var wire = event
        wire.seq = seq
        WireCodec.encode(wire, subjectSeq: subjectSeq, into: payload)
        // Same numbers, same bytes; never waits (a full queue is counted and reported to NATS subscribers).
        _ = natsHandoff?.push(subjectID: event.subjectID, payload: payload)
        if snapshotValues != nil {
            snapshotValues!.update(event.subjectID, UnsafeRawBufferPointer(start: payload, count: WireCodec.payloadSize))
        }
        do {
            try socket.send(subject, more: true)
            try socket.send(UnsafeRawBufferPointer(start: payload, count: WireCodec.payloadSize))
            sent &+= 1
            if sent % Self.latencySampleEvery == 0 { latency.recordAsOnlyWriter(nanos: Nanos.now().rawValue &- event.knownTime.rawValue) }
        } catch {
            failed.add(1, ordering: .relaxed)
        }
    }
}
