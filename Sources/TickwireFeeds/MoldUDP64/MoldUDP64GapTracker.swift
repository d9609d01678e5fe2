/// Every sequence range a MoldUDP64 receiver is missing, each with its own clock: when it was first seen, when
/// it was last re-requested and how often. Fed with times, never with sockets (Aeron's LossDetector is the
/// model), so every rule below has a unit test.
///
/// - A range opens when a packet, heartbeat or end-of-session shows sequences beyond the highest one seen
///   (`frontier`), or when a malformed datagram announced sequences it did not carry.
/// - A range is *confirmed* once a well-formed packet, heartbeat or end-of-session lies beyond it: only then do
///   the sequences certainly exist. Its give-up clock starts at confirmation (for a gap seen in good traffic,
///   the moment it was seen). An unconfirmed range — the announced count of a malformed datagram, which may be
///   garbage — is re-requested but never given up, so one corrupt header cannot turn messages not yet sent into
///   a GAP and have them dropped as duplicates when they come.
/// - Ranges are kept at most `maxMessagesPerRequest` long so that one range is one re-request; adjacent ranges
///   given up together are published as one GAP.
/// - Re-requests: a range is asked for `requestDelayNanos` after it was first seen (time for the other line),
///   again every `retryIntervalNanos`; at most `maxOutstanding` requests are outstanding (sent less than a
///   retry interval ago), lowest sequences first.
public struct MoldUDP64GapTracker: Sendable {
    public struct Limits: Sendable, Equatable {
        public var requestDelayNanos: Int64
        public var retryIntervalNanos: Int64
        public var gapTimeoutNanos: Int64
        /// Messages asked for in one request; the count field is a u16 and 0xFFFF means end of session.
        public var maxMessagesPerRequest: UInt64
        public var maxOutstanding: Int
        public init(requestDelayNanos: Int64 = 2_000_000, retryIntervalNanos: Int64 = 62_500_000, gapTimeoutNanos: Int64 = 250_000_000,
                    maxMessagesPerRequest: UInt64 = 256, maxOutstanding: Int = 64) {
            precondition((1...UInt64(MoldUDP64.endOfSession - 1)).contains(maxMessagesPerRequest) && maxOutstanding > 0)
            self.requestDelayNanos = requestDelayNanos; self.retryIntervalNanos = max(retryIntervalNanos, 1_000_000)
            self.gapTimeoutNanos = gapTimeoutNanos; self.maxMessagesPerRequest = maxMessagesPerRequest
            self.maxOutstanding = maxOutstanding
        }
        /// The source's timing from `FeedOptions`: a retry every quarter of the gap timeout, as before.
        public init(_ options: FeedOptions) {
            self.init(requestDelayNanos: options.requestDelayNanos, retryIntervalNanos: options.gapTimeoutNanos / 4,
                      gapTimeoutNanos: options.gapTimeoutNanos, maxMessagesPerRequest: options.maxMessagesPerRequest,
                      maxOutstanding: options.maxOutstandingRequests)
        }
    }

    /// Missing sequences `first..<end`.
    public struct Range: Sendable, Equatable {
        public var first: UInt64
        public var end: UInt64
        public var firstSeen: Int64
        /// When the sequences were known to exist (the give-up clock's start); nil while unconfirmed.
        public var confirmed: Int64?
        public var lastRequest: Int64?
        public var requests: Int
        public var count: UInt64 { end - first }
    }

    /// A re-request to send: session header with `first` and `count`.
    public struct Request: Sendable, Equatable {
        public var first: UInt64
        public var count: UInt16
    }

    public let limits: Limits
    /// Open ranges, sorted, disjoint.
    public private(set) var ranges: [Range] = []
    /// One past the highest sequence seen or announced.
    public private(set) var frontier: UInt64
    /// One past the highest sequence a well-formed packet, heartbeat or end-of-session showed.
    public private(set) var confirmedFrontier: UInt64
    /// Ranges opened (a fragment split off by a fill is not a new one).
    public private(set) var gapsDetected: UInt64 = 0
    public private(set) var requestsSent: UInt64 = 0

    public init(limits: Limits = Limits(), firstExpected: UInt64 = 1) {
        self.limits = limits; frontier = firstExpected; confirmedFrontier = firstExpected
    }

    public var isEmpty: Bool { ranges.isEmpty }
    /// The lowest missing sequence, if any.
    public var lowestMissing: UInt64? { ranges.first?.first }

    /// A well-formed packet carried `first..<end` (a heartbeat or end-of-session: `first == end`, the next
    /// sequence). Closes what it fills, opens what it jumps over, confirms everything before `end`.
    /// - Complexity: O(1) when nothing is missing and the packet follows on; else O(open ranges).
    public mutating func received(_ first: UInt64, _ end: UInt64, now: Int64) {
        if ranges.isEmpty && first == frontier {
            frontier = max(frontier, end); confirmedFrontier = max(confirmedFrontier, end)
            return
        }
        open(upTo: first, now: now)
        fill(first, end)
        frontier = max(frontier, end)
        confirm(upTo: max(first, end), now: now)
    }

    /// A malformed datagram of the session announced `first..<end`: what of it lies beyond the frontier is
    /// missing (unconfirmed), and so is any jump before it.
    public mutating func announced(_ first: UInt64, _ end: UInt64, now: Int64) {
        open(upTo: end, now: now)
    }

    /// Requests due at `now`, lowest sequences first, within the outstanding bound; marks them sent.
    public mutating func requestsDue(now: Int64) -> [Request] {
        var outstanding = 0
        for r in ranges { if let t = r.lastRequest, now - t < limits.retryIntervalNanos { outstanding += 1 } }
        var out: [Request] = []
        for i in ranges.indices where outstanding < limits.maxOutstanding {
            let r = ranges[i]
            guard now - r.firstSeen >= limits.requestDelayNanos else { continue }
            if let t = r.lastRequest, now - t < limits.retryIntervalNanos { continue }
            out.append(Request(first: r.first, count: UInt16(r.count)))
            ranges[i].lastRequest = now; ranges[i].requests += 1
            outstanding += 1
        }
        requestsSent &+= UInt64(out.count)
        return out
    }

    /// If the lowest open range starts at `expected` and has timed out, removes it and every adjacent range
    /// that has timed out too, and returns the sequences given up (`first...last`).
    public mutating func giveUp(at expected: UInt64, now: Int64) -> ClosedRange<UInt64>? {
        var n = 0
        var next = expected
        while n < ranges.count, ranges[n].first == next, let since = ranges[n].confirmed, now - since >= limits.gapTimeoutNanos {
            next = ranges[n].end; n += 1
        }
        if n == 0 { return nil }
        ranges.removeFirst(n)
        return expected...(next - 1)
    }

    /// Moves the start of the stream to `sequence` (a snapshot covers everything before it): ranges below it
    /// are forgotten, and nothing before it will be asked for or opened.
    public mutating func advance(to sequence: UInt64) {
        ranges.removeAll { $0.end <= sequence }
        if let i = ranges.indices.first, ranges[i].first < sequence { ranges[i].first = sequence }
        frontier = max(frontier, sequence); confirmedFrontier = max(confirmedFrontier, sequence)
    }

    /// Forgets ranges at or beyond `end` (the end of session: nothing there will come).
    public mutating func discard(from end: UInt64) {
        ranges.removeAll { $0.first >= end }
        if let i = ranges.indices.last, ranges[i].end > end { ranges[i].end = end }
    }

    /// The earliest `now` at which `requestsDue` or `giveUp` may have something (for a poll timeout).
    public var nextDeadline: Int64? {
        var t: Int64? = nil
        for r in ranges {
            let request = r.lastRequest.map { $0 + limits.retryIntervalNanos } ?? r.firstSeen + limits.requestDelayNanos
            t = min(t ?? request, request)
            if let c = r.confirmed { t = min(t!, c + limits.gapTimeoutNanos) }
        }
        return t
    }

    // MARK: -

    /// Opens `frontier..<upTo` as missing (unconfirmed), in pieces of at most `maxMessagesPerRequest`.
    mutating func open(upTo: UInt64, now: Int64) {
        guard upTo > frontier else { return }
        gapsDetected &+= 1
        var first = frontier
        while first < upTo {
            let end = min(upTo, first + limits.maxMessagesPerRequest)
            ranges.append(Range(first: first, end: end, firstSeen: now, confirmed: nil, lastRequest: nil, requests: 0))
            first = end
        }
        frontier = upTo
    }

    /// Removes `first..<end` from the open ranges, splitting those it cuts.
    mutating func fill(_ first: UInt64, _ end: UInt64) {
        guard first < end, !ranges.isEmpty else { return }
        var i = lowerBound(first)
        while i < ranges.count, ranges[i].first < end {
            let r = ranges[i]
            let left = r.first < first, right = r.end > end
            switch (left, right) {
            case (false, false): ranges.remove(at: i)
            case (true, false): ranges[i].end = first; i += 1
            case (false, true): ranges[i].first = end; i += 1
            case (true, true):
                ranges[i].end = first
                var tail = r; tail.first = end
                ranges.insert(tail, at: i + 1)
                i += 2
            }
        }
    }

    /// Starts the give-up clock of everything before `end` not yet confirmed.
    mutating func confirm(upTo end: UInt64, now: Int64) {
        guard end > confirmedFrontier else { return }
        // Confirmation is a prefix: ranges below the old confirmed frontier are confirmed already (one across
        // it was split when it was confirmed), so start there.
        var i = lowerBound(confirmedFrontier)
        confirmedFrontier = end
        while i < ranges.count, ranges[i].first < end {
            if ranges[i].confirmed == nil {
                if ranges[i].end > end {
                    var tail = ranges[i]; tail.first = end
                    ranges[i].end = end
                    ranges.insert(tail, at: i + 1)
                }
                ranges[i].confirmed = now
            }
            i += 1
        }
    }

    /// The index of the first range that ends after `sequence`.
    func lowerBound(_ sequence: UInt64) -> Int {
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].end <= sequence { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
