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
    /// record header and numbering slot are taken once a day), and one write a window.
    /// - Returns: how many events were written.
    @discardableResult
    public static func writeBinary(_ reader: StoreReader, _ q: StoreQuery, to out: ByteOutput) throws -> UInt64 {
        if q.time == .known { return try run(reader, q, pace: .max, into: StreamReplaySink(out, format: .binary)) }
        var sequencer = WireSequencer()
        var ids = [String: SubjectID]()
        var sent: UInt64 = 0
        // A window's records are built in one buffer and written from it at once: appended to the output a record
        // at a time (a header array retained and released, the output's buffer reached through its class) they
        // spent a fifth of a replay in reference counting (docs/BENCH-HISTORY.md, D5).
        var scratch = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 8), scratchBytes = 1
        defer { scratch.deallocate() }
        try reader.forEachDay(q) { cursors, merge in
            // Per subject of the day: its record header (u32 length, text, u32 payload length), all in one array
            // (subject k's from `starts[k]` to `starts[k + 1]`), and its id.
            var headers = [UInt8](), starts = [Int]()
            for c in cursors {
                starts.append(headers.count)
                headers.appendLE(UInt32(c.text.utf8.count))
                headers.append(contentsOf: c.text.utf8)
                headers.appendLE(UInt32(WireCodec.payloadSize))
            }
            starts.append(headers.count)
            let longest = zip(starts, starts.dropFirst()).map { $1 - $0 }.max() ?? 0
            let local: [SubjectID] = cursors.map { c in
                if let id = ids[c.text] { return id }
                let id = SubjectID(ids.count)
                ids[c.text] = id
                return id
            }
            try headers.withUnsafeBytes { h in
                try starts.withUnsafeBufferPointer { starts in
                    try local.withUnsafeBufferPointer { local in
                        try merge.run { rows, order in
                            let need = order.count * (longest + WireCodec.payloadSize)
                            if need > scratchBytes {
                                scratch.deallocate()
                                scratchBytes = max(need, 2 * scratchBytes)
                                scratch = .allocate(byteCount: scratchBytes, alignment: 8)
                            }
                            var at = 0
                            for i in order {
                                let r = rows[Int(i)]
                                let rank = Int(r.rank)
                                let from = starts[rank], to = starts[rank &+ 1]
                                // The subject's text sits after the 4-byte length, before the 4-byte payload length.
                                let numbers = sequencer.next(local[rank], subject: UnsafeRawBufferPointer(rebasing: h[(from &+ 4)..<(to &- 4)]))
                                var e = r.event
                                e.seq = numbers.seq
                                (scratch + at).copyMemory(from: h.baseAddress! + from, byteCount: to &- from)
                                at &+= to &- from
                                WireCodec.encode(e, subjectSeq: numbers.subjectSeq, into: scratch + at)
                                at &+= WireCodec.payloadSize
                            }
                            try out.write(UnsafeRawBufferPointer(start: scratch, count: at))
                            sent &+= UInt64(order.count)
                        }
                    }
                }
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
    /// The thread `writeBehind` hands large pieces to, started by its first call.
    private var behind: WriteBehind?

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
        try settle()
        let e = buffer.withUnsafeBytes { ByteOutput.writeAll(fd, $0) }
        if e != 0 { throw .io(operation: "write", path: path, errno: e) }
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes the buffer, then hands `bytes` to a thread of this output's own and returns at once, so that the
    /// caller builds its next piece while these go out (into a file, the kernel's copy into the page cache costs
    /// as much as building them). The caller leaves `bytes` unchanged until its next call on this output that
    /// writes, or `settle()`: each waits for the piece to be written first, so the bytes go out in call order.
    public func writeBehind(_ bytes: UnsafeRawBufferPointer) throws(StoreError) {
        try writeBehind(pieces: [bytes])
    }

    /// `writeBehind` of several pieces, written one after the other as one (gathered from where each is).
    public func writeBehind(pieces: [UnsafeRawBufferPointer]) throws(StoreError) {
        try drain()
        if behind == nil { behind = WriteBehind(fd: fd) }
        guard let behind else {   // no thread to be had: written here and now
            for p in pieces {
                let e = ByteOutput.writeAll(fd, p)
                if e != 0 { throw .io(operation: "write", path: path, errno: e) }
            }
            return
        }
        behind.hand(pieces)
    }

    /// Waits until a piece handed to `writeBehind` is written. - Throws: `StoreError.io` if writing it failed.
    public func settle() throws(StoreError) {
        guard let behind, behind.busy else { return }
        let e = behind.wait()
        if e != 0 { throw .io(operation: "write", path: path, errno: e) }
    }

    deinit { behind?.stop() }

    /// Writes every byte (again after a partial write or EINTR). - Returns: 0, or the errno of the failure.
    fileprivate static func writeAll(_ fd: Int32, _ p: UnsafeRawBufferPointer) -> Int32 {
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

/// One thread writing the pieces `ByteOutput.writeBehind` hands it, one at a time. The thread touches only the
/// descriptor, the piece's bytes and the state under `lock`; it lives until `stop()` (the output's deinit).
private final class WriteBehind {
    private let fd: Int32
    private let lock = LockWithConditions()   // condition 0: a piece handed, written, or the end
    private var thread = pthread_t()
    // Under `lock`:
    private var pieces: [UnsafeRawBufferPointer]?
    private var error: Int32 = 0
    private var stopping = false
    /// A piece is handed and not yet waited for; only the owning thread reads or writes it.
    private(set) var busy = false

    /// nil when no thread can be started.
    init?(fd: Int32) {
        self.fd = fd
        let rc = pthread_create(&thread, nil, { arg in
            Unmanaged<WriteBehind>.fromOpaque(arg!).takeUnretainedValue().run()
            return nil
        }, Unmanaged.passUnretained(self).toOpaque())
        if rc != 0 { return nil }
    }

    /// Hands a piece over (the previous one waited for). Called by the owner only.
    func hand(_ bytes: [UnsafeRawBufferPointer]) {
        precondition(!busy, "a piece handed before the previous one was waited for")
        busy = true
        lock.lock()
        pieces = bytes
        lock.broadcast(0)
        lock.unlock()
    }

    /// Waits until the piece handed is written. - Returns: 0, or the errno of its failure.
    func wait() -> Int32 {
        lock.lock()
        while pieces != nil { lock.wait(0) }
        let e = error
        error = 0
        lock.unlock()
        busy = false
        return e
    }

    /// Waits for a piece in flight, ends the thread and joins it.
    func stop() {
        lock.lock()
        stopping = true
        lock.broadcast(0)
        lock.unlock()
        pthread_join(thread, nil)
    }

    private func run() {
        lock.lock()
        while true {
            if let ps = pieces {
                lock.unlock()
                var e: Int32 = 0
                for p in ps where e == 0 { e = ByteOutput.writeAll(fd, p) }
                lock.lock()
                error = e
                pieces = nil
                lock.broadcast(0)
            } else if stopping {
                break
            } else {
                lock.wait(0)
            }
        }
        lock.unlock()
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
