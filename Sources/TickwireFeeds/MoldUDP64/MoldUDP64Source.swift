import CTickwireSys
import TickwireCore

/// A live NASDAQ feed: ITCH 5.0 in MoldUDP64 datagrams on one line or two (A and B carry the same sequence
/// numbers), unicast or multicast.
///
/// Arbitration: the first copy of each sequence number wins, whichever line brings it; later copies are
/// counted as `duplicates`. Messages that arrive ahead of the next expected sequence wait (copied) until the gap
/// before them fills. A gap open for `requestDelayNanos` (time for the other line to fill it) is re-requested
/// from the retransmission endpoint, again every quarter of the gap timeout; a gap still open after
/// `gapTimeoutNanos` is given up: a GAP event (`MD.XNAS._FEED.GAP`, scope `.source`, the exact MoldUDP64
/// sequence range, inclusive) is published and delivery resumes after it. The run ends at the end-of-session
/// packet once every sequence before it is delivered or given up, or when stopped, or after `idleTimeoutNanos`
/// with nothing received. Known time is the receive clock (CLOCK_REALTIME when the datagram was read).
public final class MoldUDP64Source: EventSource {
    public let lineA: UDPEndpoint
    public let lineB: UDPEndpoint?
    /// Read when `run` starts; may be changed before (a test learns the retransmission port after binding).
    public var options: FeedOptions
    public let clock: EasternClock
    public var name: String { "moldudp64:\(lineA)" + (lineB.map { ",\($0)" } ?? "") }
    let board = CounterBoard()
    /// Bound at init so a sender can start as soon as the source exists.
    let socketA: UDPSocket
    let socketB: UDPSocket?

    /// Counts of the line handling; ITCH counts come from the normalizer.
    struct LineCounts {
        var packetsA: UInt64 = 0, packetsB: UInt64 = 0, packetsRetransmit: UInt64 = 0
        var duplicates: UInt64 = 0, heartbeats: UInt64 = 0, badPackets: UInt64 = 0, wrongSession: UInt64 = 0
        var gapsDetected: UInt64 = 0, requestsSent: UInt64 = 0, gapEvents: UInt64 = 0, messagesLost: UInt64 = 0
        var buffered: UInt64 = 0
        func pairs() -> [(name: String, value: UInt64)] {
            [("packets.a", packetsA), ("packets.b", packetsB), ("packets.retransmit", packetsRetransmit),
             ("duplicates", duplicates), ("heartbeats", heartbeats), ("bad_packets", badPackets),
             ("wrong_session", wrongSession), ("gaps", gapsDetected), ("rerequests", requestsSent),
             ("gap_events", gapEvents), ("messages_lost", messagesLost), ("buffered_ahead", buffered)]
        }
    }

    /// Binds the line sockets now (so the caller learns at once if an endpoint is taken).
    /// - Throws: `FeedConfigError` when no date is configured (a live feed has no file name to take it from;
    ///   today's date in New York is not guessed) or a socket cannot be bound.
    public init(lineA: UDPEndpoint, lineB: UDPEndpoint? = nil, options: FeedOptions) throws(FeedConfigError) {
        guard let date = options.date else {
            throw FeedConfigError("a MoldUDP64 source needs the trading date: pass --date YYYY-MM-DD")
        }
        self.lineA = lineA; self.lineB = lineB; self.options = options
        clock = EasternClock(date: date)
        socketA = try UDPSocket(receivingOn: lineA, bufferBytes: options.receiveBufferBytes)
        socketB = try lineB.map { (e) throws(FeedConfigError) in try UDPSocket(receivingOn: e, bufferBytes: options.receiveBufferBytes) }
    }

    public func counters() -> [(name: String, value: UInt64)] { board.snapshot() }

    /// The endpoints the lines are bound to (their real ports when configured with port 0).
    public var boundLines: [UDPEndpoint] { [socketA.localEndpoint, socketB?.localEndpoint].compactMap { $0 } }

    public func run(into sink: EventSink, stop: StopSignal) throws {
        let normalizer = ITCHNormalizer(sink: sink, clock: clock)
        normalizer.depthLevels = options.depthLevels
        let gapSubject = sink.subjects.intern(Subject.marketData(venue: ITCHNormalizer.venue, symbol: ITCHNormalizer.feedToken, kind: .gap))
        let requester = try options.retransmitEndpoint.map { _ throws(FeedConfigError) in try UDPSocket() }
        var counts = LineCounts()
        func publish() { board.publish(counts.pairs() + normalizer.counts.pairs()) }
        defer { publish() }

        var session: [UInt8]? = nil
        var expected: UInt64 = 1
        var highestKnown: UInt64 = 1          // one past the highest sequence any packet announced
        var endOfSession: UInt64? = nil
        var pending: [UInt64: (known: Nanos, bytes: [UInt8])] = [:]
        var gapSince: Int64? = nil            // when the open gap (starting at `gapAt`) was first seen
        var gapAt: UInt64 = 0
        var lastRequest: Int64 = 0
        var lastReceive = tw_monotonic_ns()
        var lastPublish = lastReceive
        var failure: ITCHError? = nil

        func deliverPending() {
            while let next = pending.removeValue(forKey: expected) {
                next.bytes.withUnsafeBytes { b in normalizer.handle(ITCHMessage(base: b.baseAddress!, length: b.count), knownTime: next.known) }
                expected &+= 1
            }
        }

        func handle(_ packet: UnsafeRawBufferPointer, _ line: Int) {
            let known = Nanos.now()
            let header: MoldUDP64.Header
            do { header = try MoldUDP64.header(packet) } catch { counts.badPackets &+= 1; return }
            if session == nil { session = header.session }
            guard header.session == session else { counts.wrongSession &+= 1; return }
            switch line { case 0: counts.packetsA &+= 1; case 1: counts.packetsB &+= 1; default: counts.packetsRetransmit &+= 1 }
            if header.isEndOfSession {
                endOfSession = header.sequence
                highestKnown = max(highestKnown, header.sequence)
                return
            }
            if header.isHeartbeat { counts.heartbeats &+= 1; highestKnown = max(highestKnown, header.sequence); return }
            do {
                try MoldUDP64.forEachMessage(in: packet) { seq, m in
                    if seq < expected { counts.duplicates &+= 1; return }
                    if seq == expected {
                        normalizer.handle(m, knownTime: known)
                        expected &+= 1
                        deliverPending()
                        return
                    }
                    if pending[seq] != nil { counts.duplicates &+= 1; return }
                    pending[seq] = (known, Array(UnsafeRawBufferPointer(start: m.base, count: m.length)))
                    counts.buffered &+= 1
                }
                highestKnown = max(highestKnown, header.sequence &+ UInt64(header.count))
            } catch {
                counts.badPackets &+= 1
                normalizer.counts.record(error)
                if options.errorPolicy == .stop { failure = error }
            }
        }

        let sockets = [socketA] + (socketB.map { [$0] } ?? []) + (requester.map { [$0] } ?? [])
        let lineOf = [0] + (socketB == nil ? [] : [1]) + (requester == nil ? [] : [2])
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 8)
        defer { buffer.deallocate() }

        while !stop.isRaised {
            let ready = UDPSocket.poll(sockets, timeoutMillis: 1)
            for (i, r) in ready.enumerated() where r {
                var drained = 0
                while drained < 4096, let (n, _) = sockets[i].receive(into: buffer) {
                    handle(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), lineOf[i])
                    drained += 1
                    lastReceive = tw_monotonic_ns()
                }
            }
            if let failure { throw failure }
            let now = tw_monotonic_ns()
            if highestKnown > expected {
                let upTo = pending.keys.min() ?? highestKnown     // first sequence we hold after the gap
                if gapSince == nil || gapAt != expected {
                    // A new gap (or the old one partly filled): its own clock, and a re-request allowed at once.
                    gapSince = now; gapAt = expected; lastRequest = 0
                    counts.gapsDetected &+= 1
                }
                let open = now - gapSince!
                if let endpoint = options.retransmitEndpoint, let requester, let session, open >= options.requestDelayNanos,
                   now - lastRequest >= max(options.gapTimeoutNanos / 4, 1_000_000) {
                    var request = [UInt8]()
                    MoldUDP64.writeHeader(session: session, sequence: expected,
                                          count: UInt16(min(upTo - expected, UInt64(UInt16.max - 1))), into: &request)
                    requester.send(request, to: endpoint)
                    counts.requestsSent &+= 1
                    lastRequest = now
                }
                if open >= options.gapTimeoutNanos {
                    let t = Nanos.now()
                    sink.emit(.gap(gapSubject, first: expected, last: upTo - 1, scope: .source, eventTime: t, knownTime: t))
                    counts.gapEvents &+= 1
                    counts.messagesLost &+= upTo - expected
                    expected = upTo
                    deliverPending()
                    gapSince = nil
                }
            } else {
                gapSince = nil
            }
            if let end = endOfSession, expected >= end, pending.isEmpty { break }
            if options.idleTimeoutNanos > 0, now - lastReceive > options.idleTimeoutNanos { break }
            if now - lastPublish > 100_000_000 { publish(); lastPublish = now }
        }
    }
}
