import Synchronization
import TickwireCore
import TickwireZMQ

/// A source that subscribes to another Tickwire publisher (a remote daemon, a replay) and feeds its events into
/// this daemon's ring: fan-in across hosts, and the "ZeroMQ in" of the end-to-end benchmark.
///
/// Spec: `zmq:ENDPOINT` (everything) or `zmq:ENDPOINT#PATTERN` (one subject pattern). Events keep their times
/// and bodies; this daemon assigns its own sequences. Malformed messages (not two frames, an invalid subject, a
/// payload that does not decode) are counted by kind and skipped: `tickwire stats` shows, for this source (its
/// endpoint), `malformed` and which of `malformed_frames`, `malformed_subject`, `malformed_payload` it was.
public final class ZMQRelaySource: EventSource {
    public let name: String
    let endpoint: String
    let pattern: SubjectPattern?
    let context: ZMQContext
    private let received = Atomic<UInt64>(0)
    private let malformedFrames = Atomic<UInt64>(0)
    private let malformedSubject = Atomic<UInt64>(0)
    private let malformedPayload = Atomic<UInt64>(0)

    public init(endpoint: String, pattern: SubjectPattern? = nil, context: ZMQContext) {
        self.name = "zmq:\(endpoint)"
        self.endpoint = endpoint
        self.pattern = pattern
        self.context = context
    }

    static let batchSize = 64

    public func counters() -> [(name: String, value: UInt64)] {
        let frames = malformedFrames.load(ordering: .relaxed), subject = malformedSubject.load(ordering: .relaxed)
        let payload = malformedPayload.load(ordering: .relaxed)
        return [("events", received.load(ordering: .relaxed)), ("malformed", frames + subject + payload),
                ("malformed_frames", frames), ("malformed_subject", subject), ("malformed_payload", payload)]
    }

    public func run(into sink: EventSink, stop: StopSignal) throws {
        let socket = try context.socket(.sub)
        try socket.setReceiveHighWaterMark(0)
        try socket.subscribe(pattern?.zmqPrefix ?? "")
        try socket.connect(endpoint)
        var interner = SubjectInterner(table: sink.subjects)
        var subjectFrame = ZMQMessage(), payloadFrame = ZMQMessage()
        // Events decoded from messages already waiting go into the ring together: one claim and at most one
        // wake-up of the publisher per batch. A batch never waits for more input: it is emitted as soon as the
        // socket has nothing more.
        let batch = UnsafeMutableBufferPointer<Event>.allocate(capacity: Self.batchSize)
        defer { batch.deallocate() }
        var batched = 0
        func flush() {
            if batched > 0 { sink.emit(batch: UnsafeBufferPointer(rebasing: batch[0..<batched])) }
            received.add(UInt64(batched), ordering: .relaxed)
            batched = 0
        }
        while !stop.isRaised {
            guard try socket.waitReadable(timeoutMs: 100) else { continue }
            // Drain everything waiting before polling again.
            defer { flush() }
            while try subjectFrame.receive(from: socket, dontWait: true) {
                guard subjectFrame.more, try payloadFrame.receive(from: socket, dontWait: true), !payloadFrame.more else {
                    malformedFrames.add(1, ordering: .relaxed)
                    while socket.hasMore { _ = try socket.receive(dontWait: true) }
                    continue
                }
                // nil: outside this source's pattern (skipped); .some(nil): not a valid subject (malformed).
                let looked: SubjectID?? = subjectFrame.withUnsafeBytes { bytes in
                    if let pattern, !pattern.matches(subjectText: String(decoding: bytes, as: UTF8.self)) { return nil }
                    return .some(interner.intern(bytes))
                }
                guard let looked else { continue }
                guard let id = looked else { malformedSubject.add(1, ordering: .relaxed); continue }
                let decoded: Event? = payloadFrame.withUnsafeBytes { p in try? WireCodec.decode(p).event }
                guard var event = decoded else { malformedPayload.add(1, ordering: .relaxed); continue }
                event.subjectID = id
                batch[batched] = event
                batched += 1
                if batched == Self.batchSize { flush() }
            }
        }
    }
}

/// Maps subject bytes to `SubjectID`s without allocating on a hit: open addressing on an FNV-1a hash, entries
/// compared against the table's own bytes. Invalid subjects are refused (nil), so a hostile publisher cannot
/// inject wildcards or oversized tokens.
struct SubjectInterner {
    let table: SubjectTable
    private var slots: [UInt32]          // id + 1, 0 = empty
    private var hashes: [UInt64]
    private var used = 0

    init(table: SubjectTable, capacity: Int = 1 << 14) {
        self.table = table
        slots = [UInt32](repeating: 0, count: capacity)
        hashes = [UInt64](repeating: 0, count: capacity)
    }

    mutating func intern(_ bytes: UnsafeRawBufferPointer) -> SubjectID? {
        let h = Self.hash(bytes)
        let mask = slots.count - 1
        var i = Int(truncatingIfNeeded: h) & mask
        while slots[i] != 0 {
            if hashes[i] == h {
                let id = slots[i] - 1
                let known = table.entry(id)
                if known.count == bytes.count && memcmp(known.baseAddress!, bytes.baseAddress!, bytes.count) == 0 { return id }
            }
            i = (i + 1) & mask
        }
        let text = String(decoding: bytes, as: UTF8.self)
        guard (try? Subject(text)) != nil else { return nil }
        let id = table.intern(text: text)
        if used * 2 >= slots.count { grow() ; return intern(bytes) }
        slots[i] = id + 1
        hashes[i] = h
        used += 1
        return id
    }

    /// Eight bytes a step (a subject is ~20 bytes: three multiplies, not twenty), then a final mix so the low
    /// bits that pick the slot depend on every byte.
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        let k: UInt64 = 0x9e37_79b9_7f4a_7c15
        var h = UInt64(bytes.count) &* k
        var i = 0
        while i + 8 <= bytes.count {
            h = (h ^ bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* k
            h ^= h >> 29
            i += 8
        }
        var tail: UInt64 = 0
        var shift: UInt64 = 0
        while i < bytes.count { tail |= UInt64(bytes[i]) << shift; shift += 8; i += 1 }
        h = (h ^ tail) &* k
        return h ^ (h >> 32)
    }

    private mutating func grow() {
        let oldSlots = slots, oldHashes = hashes
        slots = [UInt32](repeating: 0, count: oldSlots.count * 2)
        hashes = [UInt64](repeating: 0, count: oldSlots.count * 2)
        let mask = slots.count - 1
        for (j, s) in oldSlots.enumerated() where s != 0 {
            var i = Int(truncatingIfNeeded: oldHashes[j]) & mask
            while slots[i] != 0 { i = (i + 1) & mask }
            slots[i] = s
            hashes[i] = oldHashes[j]
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
