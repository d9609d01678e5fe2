import CTickwireSys
import TickwireCore
#if canImport(Glibc)
import Glibc
#endif

/// Plays an ITCH 5.0 BinaryFILE out as a MoldUDP64 session, so a handler can be tested without an exchange.
///
/// Messages are packed into datagrams of up to 1,400 bytes, numbered from 1, and sent to one endpoint (line A)
/// or two (A and B, the same packets). `dropAPercent` of line A's packets are not sent (chosen by a seeded
/// generator: the same seed drops the same packets). If `retransmit` is set the player binds it and answers
/// re-requests (session, first sequence, count) from any sender with the requested messages. After the last
/// message it sends end-of-session on every line, then keeps answering re-requests for `lingerNanos`.
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
        public init(rate: Int = 100_000, dropAPercent: Double = 0, retransmit: UDPEndpoint? = nil, session: String = "TICKWIRE",
                    seed: UInt64 = 1, lingerNanos: Int64 = 2_000_000_000) {
            self.rate = rate; self.dropAPercent = dropAPercent; self.retransmit = retransmit; self.session = session
            self.seed = seed; self.lingerNanos = lingerNanos
        }
    }

    /// What the player did.
    public struct Counts: Sendable, Equatable {
        public var messages = 0, packetsA = 0, packetsB = 0, droppedA = 0, droppedMessagesA = 0, requests = 0, retransmitted = 0, badRequests = 0
        public func pairs() -> [(name: String, value: UInt64)] {
            [("messages", UInt64(messages)), ("packets.a", UInt64(packetsA)), ("packets.b", UInt64(packetsB)),
             ("dropped.a", UInt64(droppedA)), ("dropped_messages.a", UInt64(droppedMessagesA)), ("requests", UInt64(requests)), ("retransmitted", UInt64(retransmitted)),
             ("bad_requests", UInt64(badRequests))]
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
    }

    public func counters() -> [(name: String, value: UInt64)] { board.snapshot() }

    /// The endpoint re-requests are answered on (its real port when configured with port 0).
    public var retransmitEndpoint: UDPEndpoint? { server?.localEndpoint }

    /// Plays the session, then answers re-requests until the linger time passes or `stop` is raised.
    public func run(stop: StopSignal) -> Counts {
        var counts = Counts()
        defer { board.publish(counts.pairs()) }
        var rng = SplitMix64(seed: options.seed)
        let start = tw_monotonic_ns()
        var next = 0
        var packet = [UInt8]()
        packet.reserveCapacity(MoldUDP64.headerSize + MoldUDP64.maxPayload)
        while next < frames.count && !stop.isRaised {
            let first = next
            var size = 0
            while next < frames.count, next - first < Int(UInt16.max - 1), size + 2 + frames[next].length <= MoldUDP64.maxPayload {
                size += 2 + frames[next].length
                next += 1
            }
            build(first: first, end: next, into: &packet)
            let drop = Double(rng.next() % 10_000) < options.dropAPercent * 100
            if drop { counts.droppedA += 1; counts.droppedMessagesA += next - first } else { sender.send(packet, to: lines[0]); counts.packetsA += 1 }
            if lines.count > 1 { sender.send(packet, to: lines[1]); counts.packetsB += 1 }
            counts.messages = next
            serve(&counts)
            if options.rate > 0 {
                let due = start + Int64(next) * 1_000_000_000 / Int64(options.rate)
                while tw_monotonic_ns() < due { serve(&counts); tw_cpu_relax() }
            }
            if (counts.packetsA + counts.droppedA) % 256 == 0 { board.publish(counts.pairs()) }
        }
        var end = [UInt8]()
        MoldUDP64.writeHeader(session: session, sequence: UInt64(frames.count + 1), count: MoldUDP64.endOfSession, into: &end)
        for line in lines { sender.send(end, to: line) }
        let lingerUntil = tw_monotonic_ns() + options.lingerNanos
        var lastEnd = tw_monotonic_ns()
        while !stop.isRaised && tw_monotonic_ns() < lingerUntil {
            if let server { _ = UDPSocket.poll([server], timeoutMillis: 5) } else { usleep(5_000) }
            serve(&counts)
            // End-of-session again every 50 ms: a lost datagram must not leave a receiver waiting.
            if tw_monotonic_ns() - lastEnd > 50_000_000 { for line in lines { sender.send(end, to: line) }; lastEnd = tw_monotonic_ns() }
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

    /// Answers every waiting re-request.
    func serve(_ counts: inout Counts) {
        guard let server else { return }
        var request = [UInt8](repeating: 0, count: 64)
        var packet = [UInt8]()
        while true {
            guard let (n, from) = request.withUnsafeMutableBytes({ server.receive(into: $0) }) else { return }
            let parsed = request.withUnsafeBytes { b in try? MoldUDP64.header(UnsafeRawBufferPointer(rebasing: b[0..<n])) }
            guard n == MoldUDP64.requestSize, let h = parsed, h.session == session, h.sequence >= 1 else { counts.badRequests += 1; continue }
            counts.requests += 1
            var next = Int(min(h.sequence - 1, UInt64(frames.count)))
            let end = min(frames.count, next + Int(h.count))
            while next < end {
                let first = next
                var size = 0
                while next < end, size + 2 + frames[next].length <= MoldUDP64.maxPayload { size += 2 + frames[next].length; next += 1 }
                build(first: first, end: next, into: &packet)
                server.send(packet, to: from)
                counts.retransmitted += next - first
            }
        }
    }
}
