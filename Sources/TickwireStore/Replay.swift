import TickwireCore
import CTickwireSys
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How fast a replay runs: as fast as it can, or at a multiple of the recorded pace (event-time gaps).
public enum ReplayPace: Sendable, Equatable {
    case max
    case speed(Double)

    /// Parses `max`, `1x`, `10x`, `0.5x`. - Throws: `StoreError.badQuery` naming `--pace`.
    public init(parsing text: String) throws(StoreError) {
        if text == "max" { self = .max; return }
        guard text.hasSuffix("x"), let v = Double(text.dropLast()), v > 0, v.isFinite else {
            throw .badQuery(field: "--pace", reason: "'\(text)' is not max or a speed such as 1x or 10x")
        }
        self = .speed(v)
    }
}

/// Where a replay sends its events: numbered by `WireSequencer` (`seq` per stream, `subjectSeq` per subject,
/// both from 1) exactly as the live feed numbers them.
public protocol ReplaySink: AnyObject {
    func send(subject: String, subjectSeq: UInt64, event: Event) throws
    func finish() throws
}

/// Drives a replay: reads the query in replay order, numbers the events, paces them, hands them to a sink.
public enum Replayer {
    /// - Returns: how many events were sent.
    /// - Throws: `StoreError` from the store, or what the sink throws.
    @discardableResult
    public static func run(_ reader: StoreReader, _ q: StoreQuery, pace: ReplayPace, into sink: ReplaySink,
                           stop: StopSignal? = nil) throws -> UInt64 {
        var sequencer = WireSequencer()
        var sent: UInt64 = 0
        var firstEventTime: Int64?
        let start = tw_monotonic_ns()
        struct Stopped: Error {}
        do {
            try reader.replay(q) { stored in
                if stop?.isRaised == true { throw Stopped() }
                var e = stored.event
                if case .speed(let speed) = pace {
                    // Paced along the query's time axis.
                    let at = q.time == .known ? e.knownTime.rawValue : e.eventTime.rawValue
                    let first = firstEventTime ?? at
                    firstEventTime = first
                    let due = start + Int64(Double(at - first) / speed)
                    let wait = due - tw_monotonic_ns()
                    if wait > 0 {
                        var ts = timespec(tv_sec: Int(wait / Nanos.perSecond), tv_nsec: Int(wait % Nanos.perSecond))
                        nanosleep(&ts, nil)
                    }
                }
                let (seq, subjectSeq) = sequencer.next(subject: stored.subject)
                e.seq = seq
                sent += 1
                try sink.send(subject: stored.subject, subjectSeq: subjectSeq, event: e)
            }
        } catch is Stopped {}
        try sink.finish()
        return sent
    }
}

extension Replayer {
    /// `tickwire replay --format binary` at full speed: the same bytes as `run` into a binary `StreamReplaySink`,
    /// written straight from the merge. Per event: no subject string passed, hashed or retained (each subject's
    /// record header and numbering slot are taken once a day), two appends.
    /// - Returns: how many events were written.
    @discardableResult
    public static func writeBinary(_ reader: StoreReader, _ q: StoreQuery, to out: ByteOutput) throws -> UInt64 {
        if q.time == .known { return try run(reader, q, pace: .max, into: StreamReplaySink(out, format: .binary)) }
        var sequencer = WireSequencer()
        var ids = [String: SubjectID]()
        var sent: UInt64 = 0
        let payload = UnsafeMutableRawPointer.allocate(byteCount: WireCodec.payloadSize, alignment: 8)
        defer { payload.deallocate() }
        try reader.forEachDay(q) { cursors, merge in
            // Per subject of the day: its record header (u32 length, text, u32 payload length) and its id.
            let headers: [[UInt8]] = cursors.map { c in
                var h = [UInt8]()
                h.appendLE(UInt32(c.text.utf8.count))
                h.append(contentsOf: c.text.utf8)
                h.appendLE(UInt32(WireCodec.payloadSize))
                return h
            }
            let local: [SubjectID] = cursors.map { c in
                if let id = ids[c.text] { return id }
                let id = SubjectID(ids.count)
                ids[c.text] = id
                return id
            }
            try merge.run { rows, order in
                for i in order {
                    let r = rows[Int(i)]
                    let rank = Int(r.rank)
                    var e = r.event
                    let header = headers[rank]
                    let numbers = header.withUnsafeBytes { h in
                        // The subject's text sits after the 4-byte length, before the 4-byte payload length.
                        sequencer.next(local[rank], subject: UnsafeRawBufferPointer(rebasing: h[4..<(h.count - 4)]))
                    }
                    e.seq = numbers.seq
                    WireCodec.encode(e, subjectSeq: numbers.subjectSeq, into: payload)
                    out.buffer.append(contentsOf: header)
                    out.buffer.append(contentsOf: UnsafeRawBufferPointer(start: payload, count: WireCodec.payloadSize))
                }
                sent &+= UInt64(order.count)
                try out.drainIfFull()
            }
        }
        try out.drain()
        return sent
    }
}

/// Buffered output to a file (created or truncated) or standard output; the one owner of its descriptor.
public final class ByteOutput {
    public let path: String
    private let file: OwnedFile?
    private var fd: Int32 { file?.fd ?? 1 }
    public var buffer = [UInt8]()

    /// - Parameter path: a file to create or truncate; nil or `-` for standard output.
    /// - Throws: `StoreError.io` when the file cannot be opened.
    public init(path: String?) throws(StoreError) {
        if let path, path != "-" {
            file = try OwnedFile(path: path, flags: O_WRONLY | O_CREAT | O_TRUNC)
            self.path = path
        } else {
            file = nil
            self.path = "<stdout>"
            #if os(Linux)
            // Into a pipe, a reader wakes for every 64 KiB (the default size) of what can be hundreds of MB of
            // Arrow; 1 MiB, the unprivileged limit, makes its reads 16 times fewer. Not a pipe: nothing changes.
            _ = fcntl(1, 1031 /* F_SETPIPE_SZ */, 1 << 20)
            #endif
        }
        buffer.reserveCapacity(1 << 17)
    }

    /// Writes the buffer out once it holds 64 KiB.
    @inline(__always) public func drainIfFull() throws(StoreError) { if buffer.count >= 1 << 16 { try drain() } }

    /// Writes the buffer, then `bytes` straight from where they are (a large piece: no copy into the buffer).
    public func write(_ bytes: UnsafeRawBufferPointer) throws(StoreError) {
        if buffer.count + bytes.count <= 1 << 16 { buffer.append(contentsOf: bytes); return try drainIfFull() }
        try drain()
        let e = ByteOutput.writeAll(fd, bytes)
        if e != 0 { throw .io(operation: "write", path: path, errno: e) }
    }

    public func drain() throws(StoreError) {
        let e = buffer.withUnsafeBytes { ByteOutput.writeAll(fd, $0) }
        if e != 0 { throw .io(operation: "write", path: path, errno: e) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes every byte (again after a partial write or EINTR). - Returns: 0, or the errno of the failure.
    private static func writeAll(_ fd: Int32, _ p: UnsafeRawBufferPointer) -> Int32 {
        var done = 0
        while done < p.count {
            let n = Glibc.write(fd, p.baseAddress! + done, p.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        return 0
    }
}

/// Writes a replay as JSON lines (`EventText`) or length-prefixed binary messages: per event
/// `u32 LE subject length, subject, u32 LE payload length, payload`, the payload being the 72-byte wire payload
/// (`WireCodec`) — the live protocol's two frames back to back (docs/STORAGE.md, "Replay output").
public final class StreamReplaySink: ReplaySink {
    public enum Format: String, Sendable, CaseIterable { case jsonl, binary }
    private let out: ByteOutput
    private let format: Format

    public init(_ out: ByteOutput, format: Format) {
        self.out = out; self.format = format
    }

    public func send(subject: String, subjectSeq: UInt64, event: Event) throws {
        switch format {
        case .jsonl:
            EventText.appendJSON(subject: subject, subjectSeq: subjectSeq, event: event, to: &out.buffer)
            out.buffer.append(UInt8(ascii: "\n"))
        case .binary:
            out.buffer.appendLE(UInt32(subject.utf8.count))
            out.buffer.append(contentsOf: subject.utf8)
            out.buffer.appendLE(UInt32(WireCodec.payloadSize))
            let at = out.buffer.count
            out.buffer.append(contentsOf: repeatElement(0, count: WireCodec.payloadSize))
            out.buffer.withUnsafeMutableBytes { WireCodec.encode(event, subjectSeq: subjectSeq, into: $0.baseAddress! + at) }
        }
        try out.drainIfFull()
    }

    public func finish() throws { try out.drain() }
}
