import CTickwireSys
import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

/// Plays an ITCH 5.0 BinaryFILE out as a MoldUDP64 session, so a handler can be tested without an exchange.
///
/// Messages are packed into datagrams of up to 1,400 bytes, numbered from 1, and sent to one endpoint (line A)
/// or two (A and B, the same packets). `dropAPercent` of line A's packets are not sent (chosen by a seeded
/// generator: the same seed drops the same packets), and `faultsA` names packets sent malformed on line A (to
/// exercise a handler's validation). If `retransmit` is set the player binds it and answers re-requests
/// (session, first sequence, count), bounded so that a 20-byte request cannot make it a traffic amplifier: at
/// most `maxMessagesPerRequest` messages per request (the rest is trimmed) and, per sender, a token bucket of
/// `requestBurstMessages` refilled at `requestRateMessages` a second (a request finding it empty is refused).
/// Trimmed and refused requests are counted. After the last message it sends end-of-session on every line,
/// then keeps answering re-requests for `lingerNanos`.
/// Sendable: every stored property is immutable after `init`; `run` keeps its state on its own stack.
public final class MoldUDP64Player: @unchecked Sendable {
    public struct Options: Sendable {
        /// Messages per second; 0 sends as fast as the socket takes them.
        public var rate: Int
        public var dropAPercent: Double
        public var retransmit: UDPEndpoint?
        public var session: String
        public var seed: UInt64
        public var lingerNanos: Int64
        /// Message bytes (with their length prefixes) per datagram; smaller makes more packets.
        public var payloadBytes = MoldUDP64.maxPayload
        /// Line A packets (0-based, in send order) sent malformed in the given way instead of whole.
        public var faultsA: [Int: MoldUDP64.Fault] = [:]
        /// Most messages one re-request is answered with (256 ITCH messages: about 6 full datagrams).
        public var maxMessagesPerRequest = 256
        /// Per sender: messages answered in a burst, and refilled per second.
        public var requestBurstMessages = 2_048
        public var requestRateMessages = 20_000
        /// Answers wait this long before they are sent (a far re-request server, for tests of concurrency).
        public var responseDelayNanos: Int64 = 0
        /// Where to serve GLIMPSE-style snapshots over SoupBinTCP (`GlimpseServer`): the books as they stand
        /// when a client logs in, and the sequence to resume from. nil: no snapshot server.
        public var snapshot: UDPEndpoint? = nil
        public var snapshotServer = GlimpseServer.Options()
        public init(rate: Int = 100_000, dropAPercent: Double = 0, retransmit: UDPEndpoint? = nil, session: String = "TICKWIRE",
                    seed: UInt64 = 1, lingerNanos: Int64 = 2_000_000_000) {
            self.rate = rate; self.dropAPercent = dropAPercent; self.retransmit = retransmit; self.session = session
            self.seed = seed; self.lingerNanos = lingerNanos
        }
    }

    /// What the player did.
    public struct Counts: Sendable, Equatable {
        public var messages = 0, packetsA = 0, packetsB = 0, droppedA = 0, droppedMessagesA = 0, requests = 0, retransmitted = 0, badRequests = 0
        public var faultedA = 0, requestsTrimmed = 0, requestsRefused = 0
        /// The sequences of line A's dropped packets (adjacent drops merged), and of its malformed ones.
        public var droppedRangesA: [ClosedRange<UInt64>] = []
        public var faultedRangesA: [ClosedRange<UInt64>] = []
        public func pairs() -> [(name: String, value: UInt64)] {
            [("messages", UInt64(messages)), ("packets.a", UInt64(packetsA)), ("packets.b", UInt64(packetsB)),
             ("dropped.a", UInt64(droppedA)), ("dropped_messages.a", UInt64(droppedMessagesA)), ("faulted.a", UInt64(faultedA)),
             ("requests", UInt64(requests)), ("retransmitted", UInt64(retransmitted)), ("bad_requests", UInt64(badRequests)),
             ("requests_trimmed", UInt64(requestsTrimmed)), ("requests_refused", UInt64(requestsRefused))]
        }
    }

    public let file: MappedFile
    public let lines: [UDPEndpoint]
    public let options: Options
    /// Message frames (offset of the message after its prefix, length) by sequence number − 1.
    let frames: [(offset: Int, length: Int)]
    let sender: UDPSocket
    let server: UDPSocket?
    let session: [UInt8]
    let board = CounterBoard()
    let glimpse: GlimpseServer?

    /// Reads and validates the whole file first, and binds the retransmission endpoint.
    /// - Throws: `ITCHError` for a malformed file, `FeedConfigError` for a file or socket problem.
    public init(path: String, to lines: [UDPEndpoint], options: Options = Options()) throws {
        precondition(!lines.isEmpty && lines.count <= 2, "one or two lines")
        file = try MappedFile(path: path)
        var reader = BinaryFILEReader(file.bytes)
        var frames: [(Int, Int)] = []
        while let m = try reader.next() { frames.append((m.base - file.bytes.baseAddress!, m.length)) }
        self.frames = frames
        self.lines = lines
        self.options = options
        session = MoldUDP64.session(options.session)
        sender = try UDPSocket()
        server = try options.retransmit.map { (e) throws(FeedConfigError) in try UDPSocket(receivingOn: e, bufferBytes: 1 << 20) }
        glimpse = try options.snapshot.map { (e) throws(FeedConfigError) in
            try GlimpseServer(on: e, session: options.session, options: options.snapshotServer)
        }
    }

    /// What the snapshot server did; read it after `run` returns (it is the playing thread's).
    public var snapshotCounts: GlimpseServer.Counts? { glimpse?.counts }

    /// The endpoint snapshots are served on (its real port when configured with port 0).
    public var snapshotEndpoint: UDPEndpoint? { glimpse?.endpoint }

    public func counters() -> [(name: String, value: UInt64)] { board.snapshot() }

    /// The endpoint re-requests are answered on (its real port when configured with port 0).
    public var retransmitEndpoint: UDPEndpoint? { server?.localEndpoint }

    /// Plays the session, then answers re-requests until the linger time passes or `stop` is raised.
    public func run(stop: StopSignal) -> Counts {
        var counts = Counts()
        var answers = Answers()
        var state = ITCHSnapshotState()
        func pairs() -> [(name: String, value: UInt64)] { counts.pairs() + (glimpse?.counts.pairs() ?? []) }
        defer { board.publish(pairs()) }
        var lastServe: Int64 = 0
        func serveAll() {
            serve(&counts, &answers)
            guard let glimpse else { return }
            // Between packets and in the pacing spin: look at the TCP side at most every 100 µs.
            let now = tw_monotonic_ns()
            if now - lastServe < 100_000 { return }
            lastServe = now
            glimpse.serve(state: state, nextSequence: state.applied + 1, now: now)
        }
        var rng = SplitMix64(seed: options.seed)
        let start = tw_monotonic_ns()
        var next = 0
        var packet = [UInt8]()
        packet.reserveCapacity(MoldUDP64.headerSize + options.payloadBytes)
        while next < frames.count && !stop.isRaised {
            let first = next
            var size = 0
            while next < frames.count, next - first < Int(UInt16.max - 1),
                  next == first || size + 2 + frames[next].length <= options.payloadBytes {
                size += 2 + frames[next].length
                next += 1
            }
            build(first: first, end: next, into: &packet)
            // The exchange's state moves on whatever the lines lose: a snapshot includes dropped packets.
            if glimpse != nil {
                for f in frames[first..<next] { state.apply(ITCHMessage(base: file.bytes.baseAddress! + f.offset, length: f.length)) }
            }
            let drop = Double(rng.next() % 10_000) < options.dropAPercent * 100
            let range = UInt64(first + 1)...UInt64(next)
            let index = counts.packetsA + counts.droppedA
            if drop {
                counts.droppedA += 1; counts.droppedMessagesA += next - first
                if let last = counts.droppedRangesA.last, last.upperBound + 1 == range.lowerBound {
                    counts.droppedRangesA[counts.droppedRangesA.count - 1] = last.lowerBound...range.upperBound
                } else { counts.droppedRangesA.append(range) }
            } else if let fault = options.faultsA[index] {
                sender.send(malformed(packet, fault), to: lines[0]); counts.packetsA += 1
                counts.faultedA += 1; counts.faultedRangesA.append(range)
            } else { sender.send(packet, to: lines[0]); counts.packetsA += 1 }
            if lines.count > 1 { sender.send(packet, to: lines[1]); counts.packetsB += 1 }
            counts.messages = next
            serveAll()
            if options.rate > 0 {
                let due = start + Int64(next) * 1_000_000_000 / Int64(options.rate)
                while tw_monotonic_ns() < due { serveAll(); tw_cpu_relax() }
            }
            if (counts.packetsA + counts.droppedA) % 256 == 0 { board.publish(pairs()) }
        }
        var end = [UInt8]()
        MoldUDP64.writeHeader(session: session, sequence: UInt64(frames.count + 1), count: MoldUDP64.endOfSession, into: &end)
        for line in lines { sender.send(end, to: line) }
        let lingerUntil = tw_monotonic_ns() + options.lingerNanos
        var lastEnd = tw_monotonic_ns()
        while !stop.isRaised && tw_monotonic_ns() < lingerUntil {
            if let server { _ = UDPSocket.poll([server], timeoutMillis: glimpse == nil ? 5 : 1) } else { usleep(glimpse == nil ? 5_000 : 1_000) }
            serveAll()
            // End-of-session again every 50 ms: a lost datagram must not leave a receiver waiting.
            if tw_monotonic_ns() - lastEnd > 50_000_000 {
                for line in lines { sender.send(end, to: line) }
                lastEnd = tw_monotonic_ns()
                board.publish(pairs())
            }
        }
        return counts
    }

    /// A packet holding messages `first..<end` (sequence numbers first+1...).
    func build(first: Int, end: Int, into packet: inout [UInt8]) {
        packet.removeAll(keepingCapacity: true)
        MoldUDP64.writeHeader(session: session, sequence: UInt64(first + 1), count: UInt16(end - first), into: &packet)
        for i in first..<end {
            let f = frames[i]
            packet.append(UInt8(f.length >> 8)); packet.append(UInt8(f.length & 0xff))
            packet.append(contentsOf: UnsafeRawBufferPointer(rebasing: file.bytes[f.offset..<(f.offset + f.length)]))
        }
    }

    /// `packet` spoiled in the way `fault` names (the header still says what the whole packet held).
    func malformed(_ packet: [UInt8], _ fault: MoldUDP64.Fault) -> [UInt8] {
        var p = packet
        let firstLength = Int(p[20]) << 8 | Int(p[21])
        switch fault {
        case .truncatedHeader: p = Array(p.prefix(15))
        case .wrongSession: for i in 0..<MoldUDP64.sessionSize { p[i] = UInt8(ascii: "X") }
        case .countMismatch:
            // Only the first block; a one-message packet announces three.
            p = Array(p.prefix(MoldUDP64.headerSize + 2 + firstLength))
            if p[19] == 1 && p[18] == 0 { p[19] = 3 }
        case .lengthOverrun:
            // The first block claims 300 more bytes than it has; the datagram ends before them.
            let claimed = firstLength + 300
            p[20] = UInt8(claimed >> 8); p[21] = UInt8(claimed & 0xff)
        case .badMessage: p[22] = UInt8(ascii: "z")
        }
        return p
    }

    /// Re-requests waiting for their answer, and each sender's token bucket.
    struct Answers {
        var due: [(at: Int64, first: Int, end: Int, to: UDPEndpoint)] = []
        var buckets: [UDPEndpoint: (tokens: Double, at: Int64)] = [:]
    }

    /// Reads every waiting re-request, bounds it, and sends the answers that are due.
    func serve(_ counts: inout Counts, _ answers: inout Answers) {
        guard let server else { return }
        var request = [UInt8](repeating: 0, count: 64)
        let now = tw_monotonic_ns()
        while let (n, from) = request.withUnsafeMutableBytes({ server.receive(into: $0) }) {
            let parsed = request.withUnsafeBytes { b in try? MoldUDP64.header(UnsafeRawBufferPointer(rebasing: b[0..<n])) }
            guard n == MoldUDP64.requestSize, let h = parsed, h.session == session, h.sequence >= 1, !h.isEndOfSession else {
                counts.badRequests += 1; continue
            }
            counts.requests += 1
            let first = Int(min(h.sequence - 1, UInt64(frames.count)))
            let asked = min(frames.count - first, Int(h.count))
            // Each sender's bucket; the table is cleared if it grows past 4,096 senders (a spoofing flood).
            if answers.buckets[from] == nil && answers.buckets.count >= 4_096 { answers.buckets.removeAll(keepingCapacity: true) }
            var bucket = answers.buckets[from] ?? (Double(options.requestBurstMessages), now)
            bucket.tokens = min(Double(options.requestBurstMessages),
                                bucket.tokens + Double(now - bucket.at) * Double(options.requestRateMessages) / 1e9)
            bucket.at = now
            let granted = min(asked, options.maxMessagesPerRequest, Int(bucket.tokens))
            if asked > 0 && granted == 0 { counts.requestsRefused += 1; answers.buckets[from] = bucket; continue }
            if granted < asked { counts.requestsTrimmed += 1 }
            bucket.tokens -= Double(granted)
            answers.buckets[from] = bucket
            answers.due.append((now + options.responseDelayNanos, first, first + granted, from))
        }
        var packet = [UInt8]()
        while let a = answers.due.first, a.at <= now {
            answers.due.removeFirst()
            var next = a.first
            while next < a.end {
                let first = next
                var size = 0
                while next < a.end, next == first || size + 2 + frames[next].length <= MoldUDP64.maxPayload {
                    size += 2 + frames[next].length; next += 1
                }
                build(first: first, end: next, into: &packet)
                server.send(packet, to: a.to)
                counts.retransmitted += next - first
            }
        }
    }
}
