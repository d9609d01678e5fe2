import TickwireCore
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
    public var description: String {
        switch self {
        case .noPatterns: "give at least one subject pattern, such as 'MD.>'"
        case .transport(let e): e.description
        }
    }
}

/// Subscribes to a Tickwire publisher (the live daemon or a replay) and yields decoded events.
///
/// Patterns are turned into ZeroMQ prefix subscriptions (filtered at the publisher), then matched exactly
/// here, since a prefix like `MD.XNAS.` also admits subjects a `*`/`>` pattern does not. Loss is detected per
/// subject from `subject_seq`: a jump forward is reported as `.gap` before the event that revealed it.
public final class Subscriber {
    public let endpoint: String
    public let patterns: [SubjectPattern]
    private let context: ZMQContext
    private let socket: ZMQSocket
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
    public init(endpoint: String, patterns: [SubjectPattern], context: ZMQContext = ZMQContext(),
                receiveHighWaterMark: Int = 1_000_000) throws(SubscribeError) {
        guard !patterns.isEmpty else { throw .noPatterns }
        self.endpoint = endpoint
        self.patterns = patterns
        self.context = context
        do {
            socket = try context.socket(.sub)
            try socket.setReceiveHighWaterMark(receiveHighWaterMark)
            for prefix in Set(patterns.map(\.zmqPrefix)) { try socket.subscribe(prefix) }
            try socket.connect(endpoint)
        } catch { throw .transport(error) }
    }

    /// The next delivery, waiting at most `timeoutMs` (nil: forever).
    /// - Returns: nil on timeout.
    /// - Throws: `ZMQError` (EINTR when a signal arrived: check your stop flag and call again).
    public func next(timeoutMs: Int?) throws(ZMQError) -> Delivery? {
        if let p = pending { pending = nil; return p }
        let deadline = timeoutMs.map { Nanos.now().rawValue + Int64($0) * 1_000_000 }
        while true {
            var wait = -1
            if let deadline {
                let left = (deadline - Nanos.now().rawValue) / 1_000_000
                if left < 0 { return nil }
                wait = Int(left)
            }
            let ready = try ZMQ.poll([(socket, .readable)], timeoutMs: wait)
            guard ready[0].contains(.readable) else { continue }
            if let d = try receiveReady() { return d }
        }
    }

    /// A delivery if one is already waiting; never blocks.
    public func poll() throws(ZMQError) -> Delivery? {
        if let p = pending { pending = nil; return p }
        while true {
            guard let frames = try socket.receiveMultipart(dontWait: true) else { return nil }
            if let d = handle(frames) { return d }
        }
    }

    private func receiveReady() throws(ZMQError) -> Delivery? {
        while let frames = try socket.receiveMultipart(dontWait: true) {
            if let d = handle(frames) { return d }
        }
        return nil
    }

    private func handle(_ frames: [[UInt8]]) -> Delivery? {
        received += 1
        guard frames.count == 2 else { malformed += 1; malformedFrames += 1; lastError = .frames(count: frames.count); return nil }
        let subject = String(decoding: frames[0], as: UTF8.self)
        guard patterns.contains(where: { $0.matches(subjectText: subject) }) else { filtered += 1; return nil }
        let wire: WireEvent
        do { wire = try WireEvent(subjectFrame: frames[0], payload: frames[1]) } catch {
            malformed += 1; malformedPayloads += 1; lastError = error; return nil
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
