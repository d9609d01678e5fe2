/// What NATS subscribers missed, in the publisher's own sequences: per stream (a subject's first token), the
/// ranges of `seq` the NATS publisher could not send — dropped before it (its queue was full) or refused by the
/// client library (no server) — kept until they are reported in a GAP notice.
///
/// Fed without sockets: `arrived` for each message in order, `failed` for one that could not be sent; `take`
/// hands the ranges over for reporting, `giveBack` returns those that could not be reported.
package struct NATSLossTracker: Sendable {
    package struct Range: Sendable, Equatable {
        package var stream: Int
        package var first: UInt64
        package var last: UInt64
        package init(stream: Int, first: UInt64, last: UInt64) { self.stream = stream; self.first = first; self.last = last }
        package var count: UInt64 { last &- first &+ 1 }
    }

    /// Per stream: the next `seq` expected (0: none seen yet).
    private var expected: [UInt64] = []
    package private(set) var pending: [Range] = []
    /// Messages lost in total (every range ever added).
    package private(set) var lost: UInt64 = 0

    package init() {}

    /// Message `seq` of `stream` reached the NATS thread; a jump over `expected` is a loss before it.
    package mutating func arrived(stream: Int, seq: UInt64) {
        if stream >= expected.count { expected.append(contentsOf: repeatElement(0, count: stream + 1 - expected.count)) }
        let want = expected[stream]
        if want != 0 && seq > want { add(stream: stream, first: want, last: seq - 1) }
        expected[stream] = seq &+ 1
    }

    /// Message `seq` of `stream` could not be sent.
    package mutating func failed(stream: Int, seq: UInt64) { add(stream: stream, first: seq, last: seq) }

    package var hasPending: Bool { !pending.isEmpty }

    /// The ranges to report now, oldest first; the tracker forgets them.
    package mutating func take() -> [Range] {
        defer { pending.removeAll(keepingCapacity: true) }
        return pending
    }

    /// Ranges that could not be reported go back in front of any added since.
    package mutating func giveBack(_ ranges: [Range]) {
        guard !ranges.isEmpty else { return }
        let newer = pending
        pending = []
        for r in ranges + newer { merge(r) }
    }

    private mutating func add(stream: Int, first: UInt64, last: UInt64) {
        lost &+= last &- first &+ 1
        merge(Range(stream: stream, first: first, last: last))
    }

    /// Extends the stream's latest range when the new one continues it (an outage is one range, not thousands).
    private mutating func merge(_ r: Range) {
        if let i = pending.lastIndex(where: { $0.stream == r.stream }), pending[i].last &+ 1 == r.first {
            pending[i].last = r.last
        } else {
            pending.append(r)
        }
    }
}
