import TickwireCore
import TickwireNATS
import TickwireZMQ

/// What a subscriber hands its caller: an event, or a loss it detected in the sequence numbers.
public enum Delivery: Sendable, Equatable {
    case event(WireEvent)
    /// `subject` skipped subject sequences `first...last`: those messages were lost on the way (the publisher's
    /// high-water mark cut this subscriber, or the network dropped them).
    case gap(subject: String, first: UInt64, last: UInt64)
}

/// Why subscribing failed.
public enum SubscribeError: Error, CustomStringConvertible {
    case noPatterns
    case transport(ZMQError)
    case nats(NATSError)
    public var description: String {
        switch self {
        case .noPatterns: "give at least one subject pattern, such as 'MD.>'"
        case .transport(let e): e.description
        case .nats(let e): e.description
        }
    }
}

/// Subscribes to a Tickwire publisher (the live daemon or a replay over ZeroMQ, or the daemon's messages on a NATS
/// cluster) and yields decoded events.
///
/// Over ZeroMQ, patterns are turned into prefix subscriptions (filtered at the publisher), then matched exactly
/// here, since a prefix like `MD.XNAS.` also admits subjects a `*`/`>` pattern does not. Over NATS the servers
/// filter token-exactly, and the subscriber also listens for the daemon's `SYS.NATS.GAP.<STREAM>` notices of the
/// streams its patterns name (delivered as GAP events). Loss is detected per subject from `subject_seq`: a jump
/// forward is reported as `.gap` before the event that revealed it.
public final class Subscriber {
    public let endpoint: String
    public let patterns: [SubjectPattern]
    /// What is delivered: the patterns, and over NATS the GAP notices' subjects.
    private let accepted: [SubjectPattern]
    private let transport: SubscriberTransport
    private var lastSubjectSeq: [String: UInt64] = [:]
    private var pending: Delivery? = nil

    /// Counters: messages received, messages that did not match any pattern, malformed payloads, gaps detected
    /// and messages known lost.
    public private(set) var received: UInt64 = 0
    public private(set) var filtered: UInt64 = 0
    public private(set) var malformed: UInt64 = 0
    /// Of `malformed`: messages without exactly 2 frames (subject, payload), and messages whose subject or payload
    /// did not decode. A foreign or broken publisher shows up here, never as silence.
    public private(set) var malformedFrames: UInt64 = 0
    public private(set) var malformedPayloads: UInt64 = 0
    public private(set) var gaps: UInt64 = 0
    public private(set) var lost: UInt64 = 0
    /// The last malformed payload's error, for the caller to report.
    public private(set) var lastError: WireError? = nil

    /// - Parameters:
    ///   - receiveHighWaterMark: messages queued in this process before ZeroMQ drops (0: unlimited).
    /// - Throws: `SubscribeError`.
    ///   - snapshot: a daemon's snapshot endpoint (`run --snapshot-endpoint`): first deliver the last value of
    ///     every matching subject, then the live stream stitched on by `subject_seq` (see `init(nats:…)`).
    public init(endpoint: String, patterns: [SubjectPattern], context: ZMQContext = ZMQContext(),
                receiveHighWaterMark: Int = 1_000_000, snapshot: String? = nil) throws(SubscribeError) {
        guard !patterns.isEmpty else { throw .noPatterns }
        self.endpoint = endpoint
        self.patterns = patterns
        accepted = patterns
        do {
            transport = try ZMQTransport(endpoint: endpoint, patterns: patterns, context: context,
                                         receiveHighWaterMark: receiveHighWaterMark)
        } catch { throw .transport(error) }
        if let snapshot {
            // ZeroMQ says nothing of when a subscription reaches the publisher; a first message proves it has
            // (a quiet feed: ask after 500 ms, and a message published in that window shows as a gap, never silently).
            if let first = try? transport.receive(timeoutMs: 500) { prefetched.append(first) }
            if let entries = SnapshotCodec.request(context, endpoint: snapshot, patterns: patterns, timeoutMs: 5_000) {
                applySnapshot(entries)
            }
        }
    }

    /// Queues the snapshot's entries for delivery first and numbers the stitch from them.
    private func applySnapshot(_ entries: [WireEvent]) {
        let wanted = entries.filter { w in patterns.contains { $0.matches(subjectText: w.subject) } }
        for w in wanted { lastSubjectSeq[w.subject] = max(lastSubjectSeq[w.subject] ?? 0, w.subjectSeq) }
        stitch = lastSubjectSeq
        queued = wanted.reversed().map { .event($0) }   // popped from the end
        snapshotEntries = wanted.count
    }

    private var prefetched: [[[UInt8]]] = []

    private func receiveFrames(timeoutMs: Int) throws(ZMQError) -> [[UInt8]]? {
        if !prefetched.isEmpty { return prefetched.removeFirst() }
        return try transport.receive(timeoutMs: timeoutMs)
    }

    /// Subscribes on a NATS cluster (`servers`: nats://HOST:PORT of one or more of its servers).
    /// - Parameters:
    ///   - pendingLimit: messages the NATS client may hold per pattern before it drops them (counted in
    ///     `droppedLocally`; each shows as a gap in its subject's `subject_seq`).
    /// - Throws: `SubscribeError` (no server reachable names the URLs).
    ///   - snapshot: first deliver the last value of every matching subject (and book level), asked of the daemon
    ///     after subscribing, then the live stream stitched on by `subject_seq`: nothing missed, nothing repeated
    ///     (`snapshotEntries` says how many; nil when no daemon answered, and the stream starts live only).
    public init(nats servers: [String], patterns: [SubjectPattern], pendingLimit: Int32 = 1_000_000,
                snapshot: Bool = false) throws(SubscribeError) {
        guard !patterns.isEmpty else { throw .noPatterns }
        endpoint = servers.joined(separator: ",")
        self.patterns = patterns
        accepted = patterns + Self.gapNoticePatterns(for: patterns)
        let nats: NATSTransport
        do {
            nats = try NATSTransport(servers: servers, patterns: accepted, pendingLimit: pendingLimit)
        } catch { throw .nats(error) }
        transport = nats
        if snapshot, let entries = SnapshotCodec.request(nats.connection, patterns: patterns, timeoutMs: 5_000) {
            applySnapshot(entries)
        }
    }

    /// Entries of the snapshot delivered before the live stream; nil when none was asked for or none came.
    public private(set) var snapshotEntries: Int? = nil
    /// Live messages dropped because the snapshot already held them (or a later message of their subject).
    public private(set) var stitched: UInt64 = 0
    private var queued: [Delivery] = []
    private var stitch: [String: UInt64] = [:]

    /// Subscribes on a NATS cluster given as a user types it: "nats://h1:4222,nats://h2:4222".
    /// - Throws: `SubscribeError` naming a URL that is not one, or the servers when none answers.
    public convenience init(natsURLs text: String, patterns: [SubjectPattern], pendingLimit: Int32 = 1_000_000,
                            snapshot: Bool = false) throws(SubscribeError) {
        let servers: [String]
        do { servers = try NATS.parseServers(text) } catch { throw .nats(error) }
        try self.init(nats: servers, patterns: patterns, pendingLimit: pendingLimit, snapshot: snapshot)
    }

    /// The daemon's NATS GAP notices for the streams `patterns` can match: `SYS.NATS.GAP.MD` for `MD.XNAS.>`,
    /// every stream's for a pattern whose first token is a wildcard.
    public static func gapNoticePatterns(for patterns: [SubjectPattern]) -> [SubjectPattern] {
        var roots: [String] = []
        for p in patterns {
            let root: String
            if case .literal(let r)? = p.tokens.first { root = r } else { root = "*" }
            if !roots.contains(root) { roots.append(root) }
        }
        if roots.contains("*") { roots = ["*"] }
        return roots.compactMap { try? SubjectPattern(gapNoticePrefix + $0) }
    }

    /// The subjects of the daemon's NATS GAP notices: `SYS.NATS.GAP.<STREAM>` (docs/PROTOCOL.md).
    public static let gapNoticePrefix = "SYS.NATS.GAP."

    /// Messages the transport dropped in this process before they were read (the NATS client's pending limit);
    /// each also shows as a `.gap` of its subject when that subject's next message arrives.
    public var droppedLocally: Int64 { transport.droppedLocally }
    /// Times a NATS subscriber's connection was lost and made again (0 over ZeroMQ): what was on its way then
    /// shows as gaps.
    public var reconnects: UInt64 { transport.reconnects }

    /// The next delivery, waiting at most `timeoutMs` (nil: forever).
    /// - Returns: nil on timeout.
    /// - Throws: `ZMQError` (EINTR when a signal arrived: check your stop flag and call again).
    public func next(timeoutMs: Int?) throws(ZMQError) -> Delivery? {
        if let q = queued.popLast() { return q }
        if let p = pending { pending = nil; return p }
        let deadline = timeoutMs.map { Nanos.now().rawValue + Int64($0) * 1_000_000 }
        while true {
            var wait = -1
            if let deadline {
                let left = (deadline - Nanos.now().rawValue) / 1_000_000
                if left < 0 { return nil }
                wait = Int(left)
            }
            guard let frames = try receiveFrames(timeoutMs: wait) else { continue }
            if let d = handle(frames) { return d }
        }
    }

    /// A delivery if one is already waiting; never blocks.
    public func poll() throws(ZMQError) -> Delivery? {
        if let q = queued.popLast() { return q }
        if let p = pending { pending = nil; return p }
        while true {
            guard let frames = try receiveFrames(timeoutMs: 0) else { return nil }
            if let d = handle(frames) { return d }
        }
    }

    private func handle(_ frames: [[UInt8]]) -> Delivery? {
        received += 1
        guard frames.count == 2 else { malformed += 1; malformedFrames += 1; lastError = .frames(count: frames.count); return nil }
        let subject = String(decoding: frames[0], as: UTF8.self)
        guard accepted.contains(where: { $0.matches(subjectText: subject) }) else { filtered += 1; return nil }
        let wire: WireEvent
        do { wire = try WireEvent(subjectFrame: frames[0], payload: frames[1]) } catch {
            malformed += 1; malformedPayloads += 1; lastError = error; return nil
        }
        if !stitch.isEmpty, let upTo = stitch[subject] {
            // Stitching the live stream onto the snapshot: what the snapshot covered is not delivered twice.
            if wire.subjectSeq <= upTo { stitched += 1; return nil }
            stitch.removeValue(forKey: subject)
        }
        let event = Delivery.event(wire)
        if let last = lastSubjectSeq[subject], wire.subjectSeq > last &+ 1 {
            // A restarted publisher starts again at 1: that is a reset, not a loss (handled by the <= case).
            gaps += 1
            lost += wire.subjectSeq - last - 1
            lastSubjectSeq[subject] = wire.subjectSeq
            pending = event
            return .gap(subject: subject, first: last + 1, last: wire.subjectSeq - 1)
        }
        lastSubjectSeq[subject] = wire.subjectSeq
        return event
    }
}
