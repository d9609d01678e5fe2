import CTickwireSys
import TickwireCore

/// A live NASDAQ feed: ITCH 5.0 in MoldUDP64 datagrams on one line or two (A and B carry the same sequence
/// numbers), unicast or multicast.
///
/// Arbitration: the first copy of each sequence number wins, whichever line brings it; later copies are
/// counted as `duplicates`. Messages that arrive ahead of the next expected sequence wait (copied) until the gap
/// before them fills. Every open gap is tracked at once by a `MoldUDP64GapTracker`, each on its own clock from
/// when it was seen: re-requested from the retransmission endpoint after `requestDelayNanos` (time for the other
/// line to fill it), again every quarter of the gap timeout, many at a time; given up `gapTimeoutNanos` after it
/// was seen: a GAP event (`MD.XNAS._FEED.GAP`, scope `.source`, the exact MoldUDP64 sequence range, inclusive) is
/// published in sequence and delivery resumes after it.
///
/// Nothing from the network stops the source: a malformed datagram (see `MoldUDP64.Fault`) is validated whole
/// before any of its messages is used, dropped whole, counted by kind, and the sequences it announced are
/// treated as missing. `FeedOptions.errorPolicy` does not apply here (it is for files).
///
/// Known time: when the handler could deliver the message in sequence — the receive clock (CLOCK_REALTIME when
/// the datagram was read) for a message that arrives in order, the release time for one held behind a gap, the
/// give-up time for a GAP — never earlier than the event before it, so known time never goes backwards in the
/// delivered stream.
///
/// Sequence window: a packet more than `FeedOptions.maxSequenceJump` beyond the highest sequence seen is dropped
/// and counted (`sequence_jumps`), never opened as a gap.
///
/// Snapshots (`FeedOptions.snapshotEndpoint`, a GLIMPSE-style SoupBinTCP server): the source starts from one
/// (holding its lines' datagrams, bounded, until it says where the session is), and after an unrecoverable gap or
/// a sequence jump marks every book stale (`ITCHNormalizer.markAllStale`), keeps what it delivers meanwhile, takes
/// another snapshot and installs it (`ITCHNormalizer.rebuild`): at once, brought up to date with the kept
/// messages, when it is behind the stream; when the stream reaches its sequence when it is ahead.
/// docs/FEEDS.md, "Snapshots".
///
/// The run ends at the end-of-session packet once every sequence before it is delivered or given up (and, with
/// a snapshot server, the books rebuilt), or when stopped, or after `idleTimeoutNanos` with nothing received.
public final class MoldUDP64Source: EventSource {
    public let lineA: UDPEndpoint
    public let lineB: UDPEndpoint?
    /// Read when `run` starts; may be changed before (a test learns the retransmission port after binding).
    public var options: FeedOptions
    /// Re-request bounds; nil derives them from `options` (`MoldUDP64GapTracker.Limits(options)`).
    public var recoveryLimits: MoldUDP64GapTracker.Limits? = nil
    public let clock: EasternClock
    public var name: String { "moldudp64:\(lineA)" + (lineB.map { ",\($0)" } ?? "") }
    let board = CounterBoard()
    /// Bound at init so a sender can start as soon as the source exists.
    let socketA: UDPSocket
    let socketB: UDPSocket?

    /// Counts of the line handling; ITCH counts come from the normalizer.
    struct LineCounts {
        var packetsA: UInt64 = 0, packetsB: UInt64 = 0, packetsRetransmit: UInt64 = 0
        var duplicates: UInt64 = 0, heartbeats: UInt64 = 0
        var badPackets = [UInt64](repeating: 0, count: MoldUDP64.Fault.allCases.count)
        var gapEvents: UInt64 = 0, messagesLost: UInt64 = 0, buffered: UInt64 = 0
        var sequenceJumps: UInt64 = 0, sessionResets: UInt64 = 0
        var snapshots: UInt64 = 0, snapshotFailures: UInt64 = 0, snapshotBehind: UInt64 = 0, snapshotBufferDropped: UInt64 = 0
        var snapshotReplayed: UInt64 = 0
        mutating func record(_ fault: MoldUDP64.Fault) {
            badPackets[MoldUDP64.Fault.allCases.firstIndex(of: fault)!] &+= 1
        }
        func pairs(_ tracker: MoldUDP64GapTracker) -> [(name: String, value: UInt64)] {
            var out: [(name: String, value: UInt64)] = [
                ("packets.a", packetsA), ("packets.b", packetsB), ("packets.retransmit", packetsRetransmit),
                ("duplicates", duplicates), ("heartbeats", heartbeats), ("bad_packets", badPackets.reduce(0, &+))]
            for (i, f) in MoldUDP64.Fault.allCases.enumerated() { out.append(("bad_packets.\(f.counterName)", badPackets[i])) }
            out += [("gaps", tracker.gapsDetected), ("gaps_open", UInt64(tracker.ranges.count)), ("rerequests", tracker.requestsSent),
                    ("gap_events", gapEvents), ("messages_lost", messagesLost), ("buffered_ahead", buffered),
                    ("sequence_jumps", sequenceJumps), ("session_resets", sessionResets)]
            if snapshots > 0 || snapshotFailures > 0 {
                out += [("snapshots", snapshots), ("snapshot_failures", snapshotFailures), ("snapshot_behind", snapshotBehind),
                        ("snapshot_buffer_dropped", snapshotBufferDropped), ("snapshot_replayed", snapshotReplayed)]
            }
            return out
        }
    }

    /// Binds the line sockets now (so the caller learns at once if an endpoint is taken).
    /// - Throws: `FeedConfigError` when no date is configured (a live feed has no file name to take it from;
    ///   today's date in New York is not guessed) or a socket cannot be bound.
    public init(lineA: UDPEndpoint, lineB: UDPEndpoint? = nil, options: FeedOptions) throws(FeedConfigError) {
        guard let date = options.date else {
            throw FeedConfigError("a MoldUDP64 source needs the trading date: " + FeedOptions.howToSetDate)
        }
        self.lineA = lineA; self.lineB = lineB; self.options = options
        clock = EasternClock(date: date)
        socketA = try UDPSocket(receivingOn: lineA, bufferBytes: options.receiveBufferBytes)
        socketB = try lineB.map { (e) throws(FeedConfigError) in try UDPSocket(receivingOn: e, bufferBytes: options.receiveBufferBytes) }
    }

    public func counters() -> [(name: String, value: UInt64)] { board.snapshot() }

    /// Flushes before each wait for datagrams.
    public var flushesSink: Bool { true }

    /// The endpoints the lines are bound to (their real ports when configured with port 0).
    public var boundLines: [UDPEndpoint] { [socketA.localEndpoint, socketB?.localEndpoint].compactMap { $0 } }

    public func run(into sink: EventSink, stop: StopSignal) throws {
        let normalizer = ITCHNormalizer(sink: sink, clock: clock)
        normalizer.depthLevels = options.depthLevels
        let gapSubject = sink.subjects.intern(Subject.marketData(venue: ITCHNormalizer.venue, symbol: ITCHNormalizer.feedToken, kind: .gap))
        let requester = try options.retransmitEndpoint.map { _ throws(FeedConfigError) in try UDPSocket() }
        var counts = LineCounts()
        var tracker = MoldUDP64GapTracker(limits: recoveryLimits ?? MoldUDP64GapTracker.Limits(options))
        func publish() { board.publish(counts.pairs(tracker) + normalizer.counts.pairs()) }
        defer { publish() }

        var session: [UInt8]? = nil
        var expected: UInt64 = 1
        var endOfSession: UInt64? = nil
        var pending: [UInt64: [UInt8]] = [:]
        var lastKnown = Nanos.zero           // known time of the last event delivered: it never goes back
        var lastReceive = tw_monotonic_ns()
        var lastPublish = lastReceive

        // Snapshot recovery (GLIMPSE over SoupBinTCP). At start, datagrams are held (bounded) until the first
        // snapshot says where the session is; after an unrecoverable gap the books are marked stale, delivery
        // goes on (kept in `log`), and the snapshot taken is installed: replaying the log when it is behind the
        // stream, when the stream reaches its sequence (`installIfDue`) when it is ahead.
        let snapshots = options.snapshotEndpoint
        var snapshot: GlimpseClient? = nil
        var nextSnapshotAttempt: Int64 = 0
        var wantSnapshot = snapshots != nil
        var starting = snapshots != nil
        var held: [(bytes: [UInt8], line: Int)] = []
        var joinCandidate: UInt64? = nil
        var heldBytes = 0
        var ready: GlimpseClient.Snapshot? = nil   // taken, waiting for the stream to reach its sequence
        // While books are stale, every message delivered is kept (from `logFrom` on, at most snapshotBufferBytes):
        // a snapshot taken meanwhile is usually behind the stream by the time it is complete (the lines go on
        // while it comes), and these bring its books up to date. `lastLost`: the highest sequence given up.
        var logging = false
        var log: [(seq: UInt64, bytes: [UInt8])] = []
        var logBytes = 0
        var logFrom: UInt64 = .max
        var lastLost: UInt64 = 0

        func stamp(_ t: Nanos) -> Nanos { lastKnown = max(lastKnown, t); return lastKnown }

        /// Books not known to be right from here: STATUS per symbol, a snapshot wanted, delivered messages kept.
        func goStale(_ reason: String, _ t: Nanos) {
            normalizer.markAllStale(reason: reason, knownTime: t)
            // A snapshot on its way or waiting is checked against `lastLost` when installed.
            if snapshot == nil && ready == nil { wantSnapshot = true }
            if !logging { logging = true; log.removeAll(); logBytes = 0; logFrom = expected }
        }

        /// Rebuilds the books from `s`, brought up to date with what was delivered from its sequence on.
        func install(_ s: GlimpseClient.Snapshot) {
            let t = stamp(Nanos.now())
            let replay = s.nextSequence < expected ? log.filter { $0.seq >= s.nextSequence }.map(\.bytes) : []
            s.messages.withUnsafeBytes { _ = normalizer.rebuild(from: $0, replay: replay, knownTime: t) }
            counts.snapshots &+= 1
            counts.snapshotReplayed &+= UInt64(replay.count)
            logging = false; log.removeAll(); logBytes = 0; logFrom = .max
            // Lost after the snapshot's point: still not right.
            if lastLost >= s.nextSequence { goStale("GAP", t) }
        }

        /// Installs the snapshot waiting once the stream reaches its sequence.
        func installIfDue() {
            guard let s = ready, s.nextSequence <= expected else { return }
            ready = nil
            install(s)
        }

        @inline(__always) func deliver(_ m: ITCHMessage, _ known: Nanos) {
            if ready != nil { installIfDue() }
            if logging {
                if logFrom != .max && logBytes + m.length <= options.snapshotBufferBytes {
                    log.append((expected, Array(UnsafeRawBufferPointer(start: m.base, count: m.length)))); logBytes += m.length
                } else if logFrom != .max {
                    logFrom = .max; log.removeAll(); logBytes = 0     // too much to keep: only a newer snapshot will do
                    counts.snapshotBufferDropped &+= 1
                }
            }
            normalizer.handle(m, knownTime: known)
            expected &+= 1
        }

        func deliverPending() {
            guard pending[expected] != nil else { return }
            let known = stamp(Nanos.now())      // released now: not known in sequence before
            while let next = pending.removeValue(forKey: expected) {
                next.withUnsafeBytes { b in deliver(ITCHMessage(base: b.baseAddress!, length: b.count), known) }
            }
        }

        /// A sequence further than the window beyond anything seen: not a gap to open (2^60 would be 2^52
        /// ranges) but a session reset or garbage. Dropped, counted; a snapshot decides where the session is.
        func jumps(_ sequence: UInt64) -> Bool {
            let base = max(expected, tracker.frontier)
            guard sequence > base, sequence - base > options.maxSequenceJump else { return false }
            counts.sequenceJumps &+= 1
            if snapshots != nil { goStale("SEQJUMP", stamp(Nanos.now())) }
            return true
        }

        func handle(_ packet: UnsafeRawBufferPointer, _ line: Int, now: Int64) {
            let header: MoldUDP64.Header
            do { header = try MoldUDP64.header(packet) } catch { counts.record(.truncatedHeader); return }
            if let session, header.session != session { counts.record(.wrongSession); return }
            // The first datagram of a session joined mid-way without a snapshot server: start there (there is
            // nothing before it to recover), rather than treat everything before it as lost.
            // Two well-formed datagrams within the window of each other are needed, so one garbage sequence
            // cannot move the start (the first is dropped and its messages recovered as a gap).
            if session == nil && snapshots == nil && !header.isEndOfSession && header.sequence > expected &+ options.maxSequenceJump,
               (try? MoldUDP64.validate(packet)) != nil {
                if let c = joinCandidate, header.sequence >= c, header.sequence - c <= options.maxSequenceJump {
                    counts.sessionResets &+= 1
                    expected = c; tracker.advance(to: c); joinCandidate = nil
                } else {
                    joinCandidate = header.sequence; counts.sequenceJumps &+= 1
                    return
                }
            }
            // Validated whole before any message is used: a bad datagram delivers nothing, and what it announced
            // is missing (believed no further than a datagram could hold). Only a valid datagram sets the session.
            if !header.isEndOfSession {
                do {
                    _ = try MoldUDP64.validate(packet)
                } catch {
                    counts.record(MoldUDP64.Fault(error.problem))
                    if session != nil && !jumps(header.sequence) {
                        let announced = min(UInt64(header.count), UInt64(MoldUDP64.maxMessagesPerDatagram))
                        tracker.announced(header.sequence, header.sequence &+ announced, now: now)
                    }
                    return
                }
            }
            if jumps(header.sequence) { return }
            if session == nil { session = header.session }
            if header.isEndOfSession {
                switch line { case 0: counts.packetsA &+= 1; case 1: counts.packetsB &+= 1; default: counts.packetsRetransmit &+= 1 }
                endOfSession = header.sequence
                tracker.received(header.sequence, header.sequence, now: now)
                return
            }
            switch line { case 0: counts.packetsA &+= 1; case 1: counts.packetsB &+= 1; default: counts.packetsRetransmit &+= 1 }
            if header.isHeartbeat { counts.heartbeats &+= 1; tracker.received(header.sequence, header.sequence, now: now); return }
            tracker.received(header.sequence, header.sequence &+ UInt64(header.count), now: now)
            var read: Nanos? = nil              // the receive clock, read once per datagram
            MoldUDP64.forEachMessage(inValidated: packet, header) { seq, m in
                if seq < expected { counts.duplicates &+= 1; return }
                if seq == expected {
                    if read == nil { read = Nanos.now() }
                    // Through `stamp`: messages released from `pending` just before may carry a later time.
                    deliver(m, stamp(read!))
                    deliverPending()
                    return
                }
                if pending[seq] != nil { counts.duplicates &+= 1; return }
                pending[seq] = Array(UnsafeRawBufferPointer(start: m.base, count: m.length))
                counts.buffered &+= 1
            }
        }

        /// A snapshot arrived: at start the session begins at its sequence and the held datagrams are handled;
        /// later it waits for the stream to reach its sequence. One older than what was delivered is refused.
        func taken(_ s: GlimpseClient.Snapshot, now: Int64) {
            if starting {
                starting = false
                expected = s.nextSequence
                tracker.advance(to: s.nextSequence)
                ready = s
                installIfDue()
                let replay = held
                held = []; heldBytes = 0
                for d in replay { d.bytes.withUnsafeBytes { handle($0, d.line, now: now) } }
                deliverPending()
                return
            }
            if s.nextSequence < expected {
                // Behind the stream: usable if every message delivered since its sequence was kept.
                if logFrom <= s.nextSequence { install(s); return }
                counts.snapshotBehind &+= 1; counts.snapshotFailures &+= 1
                wantSnapshot = true; nextSnapshotAttempt = now + options.snapshotRetryNanos
                return
            }
            // Usually the snapshot's sequence lies between `expected` and what the lines have shown (frontier).
            let seen = max(expected, tracker.frontier)
            if s.nextSequence > seen && s.nextSequence - seen > options.maxSequenceJump {
                // The session really is there (a reset): nothing before it will come.
                counts.sessionResets &+= 1
                expected = s.nextSequence
                tracker.advance(to: s.nextSequence)
                pending = pending.filter { $0.key >= s.nextSequence }
            }
            ready = s
            installIfDue()
            deliverPending()
        }

        let sockets = [socketA] + (socketB.map { [$0] } ?? []) + (requester.map { [$0] } ?? [])
        let lineOf = [0] + (socketB == nil ? [] : [1]) + (requester == nil ? [] : [2])
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65_536, alignment: 8)
        defer { buffer.deallocate() }
        var request = [UInt8]()

        while !stop.isRaised {
            sink.flush()
            let readable = UDPSocket.poll(sockets, timeoutMillis: 1)
            for (i, r) in readable.enumerated() where r {
                var drained = 0
                while drained < 4096, let (n, _) = sockets[i].receive(into: buffer) {
                    lastReceive = tw_monotonic_ns()
                    drained += 1
                    if starting && lineOf[i] != 2 {
                        if heldBytes + n <= options.snapshotBufferBytes {
                            held.append((Array(UnsafeRawBufferPointer(rebasing: buffer[0..<n])), lineOf[i])); heldBytes += n
                        } else { counts.snapshotBufferDropped &+= 1 }
                        continue
                    }
                    handle(UnsafeRawBufferPointer(rebasing: buffer[0..<n]), lineOf[i], now: lastReceive)
                }
            }
            var now = tw_monotonic_ns()
            if let endpoint = snapshots {
                if snapshot == nil && wantSnapshot && now >= nextSnapshotAttempt {
                    var o = GlimpseClient.Options(endpoint: endpoint)
                    o.username = options.snapshotUsername; o.password = options.snapshotPassword
                    o.timeoutNanos = options.snapshotTimeoutNanos
                    wantSnapshot = false
                    do { snapshot = try GlimpseClient(o, now: now) } catch {
                        counts.snapshotFailures &+= 1; wantSnapshot = true; nextSnapshotAttempt = now + options.snapshotRetryNanos
                    }
                }
                if let c = snapshot {
                    switch c.pump(now: now) {
                    case .inProgress: break
                    case .done(let s): snapshot = nil; taken(s, now: now)
                    case .failed:
                        snapshot = nil; counts.snapshotFailures &+= 1
                        wantSnapshot = true; nextSnapshotAttempt = now + options.snapshotRetryNanos
                    }
                    now = tw_monotonic_ns()
                }
            }
            if starting {
                if options.idleTimeoutNanos > 0, now - lastReceive > options.idleTimeoutNanos { break }
                if now - lastPublish > 100_000_000 { publish(); lastPublish = now }
                continue
            }
            if ready != nil { installIfDue() }   // the stream may have reached its sequence with the last message
            if let end = endOfSession { tracker.discard(from: end) }
            if !tracker.isEmpty {
                if let endpoint = options.retransmitEndpoint, let requester, let session {
                    for r in tracker.requestsDue(now: now) {
                        request.removeAll(keepingCapacity: true)
                        MoldUDP64.writeHeader(session: session, sequence: r.first, count: r.count, into: &request)
                        requester.send(request, to: endpoint)
                    }
                }
                while let lost = tracker.giveUp(at: expected, now: now) {
                    let t = stamp(Nanos.now())
                    sink.emit(.gap(gapSubject, first: lost.lowerBound, last: lost.upperBound, scope: .source, eventTime: t, knownTime: t))
                    counts.gapEvents &+= 1
                    counts.messagesLost &+= lost.upperBound - lost.lowerBound + 1   // not `count`: an Int, it could trap
                    expected = lost.upperBound + 1
                    lastLost = max(lastLost, lost.upperBound)
                    if snapshots != nil {
                        // Covered by a snapshot waiting whose sequence is past the loss; otherwise the books are
                        // wrong from here: stale until rebuilt (a snapshot on its way was asked for after the
                        // loss was seen, and `install` checks `lastLost` against its sequence).
                        if let s = ready, s.nextSequence > lost.upperBound { } else { goStale("GAP", t) }
                        installIfDue()
                    }
                    deliverPending()
                }
            }
            let rebuilding = snapshot != nil || ready != nil || wantSnapshot
            if let end = endOfSession, expected >= end, pending.isEmpty, !rebuilding || snapshots == nil { break }
            if options.idleTimeoutNanos > 0, now - lastReceive > options.idleTimeoutNanos { break }
            if now - lastPublish > 100_000_000 { publish(); lastPublish = now }
        }
    }
}
