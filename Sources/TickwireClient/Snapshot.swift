import TickwireCore
import TickwireNATS
import TickwireZMQ

/// The late joiner's snapshot (docs/PROTOCOL.md, "Snapshot"): the last message of every subject matching a
/// subscriber's patterns — and of every level of every book — with the numbers it was published with, so the
/// live stream can be stitched on after it by `subject_seq`, nothing missed or repeated.
///
/// Over NATS: a request on `SYS.NATS.SNAPSHOT` whose body is the patterns, separated by spaces, and whose reply
/// subject receives one or more chunks:
///
/// ```
/// chunk:  "TWS1" | index u32 | count u32 | entries u32 | entry…        (little-endian)
/// entry:  subject length u8 | subject | 72-byte payload (version 1, as on the wire)
/// ```
public enum SnapshotCodec {
    public static let requestSubject = "SYS.NATS.SNAPSHOT"
    public static let magic: [UInt8] = Array("TWS1".utf8)
    public static let headerSize = 16
    /// A chunk stays well under nats-server's default max_payload (1 MiB).
    public static let chunkBytes = 256 << 10

    /// Splits entries (subject, payload) into chunks.
    public static func chunks(_ entries: [(subject: [UInt8], payload: UnsafeRawBufferPointer)]) -> [[UInt8]] {
        var bodies: [[UInt8]] = [[]]
        var counts: [UInt32] = [0]
        for (subject, payload) in entries {
            let size = 1 + subject.count + WireCodec.payloadSize
            if bodies[bodies.count - 1].count + size > chunkBytes - headerSize { bodies.append([]); counts.append(0) }
            bodies[bodies.count - 1].append(UInt8(subject.count))
            bodies[bodies.count - 1] += subject
            bodies[bodies.count - 1] += payload.prefix(WireCodec.payloadSize)
            counts[counts.count - 1] += 1
        }
        return bodies.enumerated().map { i, body in
            var out = magic
            for v in [UInt32(i), UInt32(bodies.count), counts[i]] { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
            return out + body
        }
    }

    /// One chunk's entries. - Returns: nil for a malformed chunk.
    public static func decode(chunk: [UInt8]) -> (index: Int, count: Int, entries: [WireEvent])? {
        guard chunk.count >= headerSize, Array(chunk[0..<4]) == magic else { return nil }
        func u32(_ o: Int) -> Int { Int(UInt32(chunk[o]) | UInt32(chunk[o + 1]) << 8 | UInt32(chunk[o + 2]) << 16 | UInt32(chunk[o + 3]) << 24) }
        let index = u32(4), count = u32(8), n = u32(12)
        var entries: [WireEvent] = []
        var o = headerSize
        for _ in 0..<n {
            guard o < chunk.count else { return nil }
            let len = Int(chunk[o])
            guard o + 1 + len + WireCodec.payloadSize <= chunk.count else { return nil }
            let subject = String(decoding: chunk[(o + 1)..<(o + 1 + len)], as: UTF8.self)
            guard let (e, s) = try? WireCodec.decode(Array(chunk[(o + 1 + len)..<(o + 1 + len + WireCodec.payloadSize)])) else { return nil }
            entries.append(WireEvent(subject: subject, subjectSeq: s, event: e))
            o += 1 + len + WireCodec.payloadSize
        }
        return (index, count, entries)
    }

    /// Asks the daemon for the snapshot of `patterns` and waits for every chunk.
    /// - Returns: the entries, or nil when no daemon answered within `timeoutMs`.
    static func request(_ connection: NATSConnection, patterns: [SubjectPattern], timeoutMs: Int64) -> [WireEvent]? {
        let inbox = "_INBOX.tickwire.\(UInt64.random(in: 1...UInt64.max))"
        guard let sub = try? connection.subscribeSync(inbox) else { return nil }
        defer { sub.unsubscribe() }
        let body = Array(patterns.map(\.text).joined(separator: " ").utf8)
        guard (try? connection.publish(subject: requestSubject, bytes: body, reply: inbox)) != nil,
              (try? connection.flush()) != nil else { return nil }
        var got: [Int: [WireEvent]] = [:]
        var total = 1
        while got.count < total {
            guard let chunk = sub.next(timeoutMs: timeoutMs, { $0.bytes }), let c = decode(chunk: chunk) else { return nil }
            total = c.count
            got[c.index] = c.entries
        }
        return (0..<total).flatMap { got[$0] ?? [] }
    }

    /// Asks a daemon's ZeroMQ snapshot socket (REP) for the snapshot of `patterns`: one request, the patterns;
    /// one reply, one frame per chunk. - Returns: the entries, or nil when nothing answered within `timeoutMs`.
    static func request(_ context: ZMQContext, endpoint: String, patterns: [SubjectPattern], timeoutMs: Int) -> [WireEvent]? {
        guard let socket = try? context.socket(.req) else { return nil }
        defer { socket.close() }
        guard (try? socket.setLinger(milliseconds: 0)) != nil, (try? socket.connect(endpoint)) != nil,
              (try? socket.send(Array(patterns.map(\.text).joined(separator: " ").utf8))) != nil,
              (try? socket.waitReadable(timeoutMs: timeoutMs)) == true,
              let frames = try? socket.receiveMultipart(dontWait: true) else { return nil }
        var out: [WireEvent] = []
        for f in frames {
            guard let c = decode(chunk: f) else { return nil }
            out += c.entries
        }
        return out
    }
}
