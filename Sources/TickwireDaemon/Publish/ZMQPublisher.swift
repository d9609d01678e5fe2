import TickwireCore
import TickwireZMQ

/// The daemon's outbound stage: encodes ring events into the two-frame wire format (docs/PROTOCOL.md) and
/// sends them on a ZeroMQ PUB socket. Runs on one thread; allocates nothing per event.
///
/// ZeroMQ filters by subject prefix at this socket and never blocks it: a subscriber whose queue reaches the
/// high-water mark loses messages, and sees the loss as a jump in `seq` and `subject_seq`.
final class ZMQPublisher {
    let socket: ZMQSocket
    let subjects: SubjectTable
    private var subjectSeq: [UInt64] = []
    /// Per subject id: 1 + the index of its stream (its first token) in `streamSeq`; 0 until first seen.
    private var streamOf: [UInt32] = []
    private var streamSeq: [UInt64] = []
    private var streamIndex: [String: UInt32] = [:]
    private let payload = UnsafeMutableRawPointer.allocate(byteCount: WireCodec.payloadSize, alignment: 8)
    private(set) var sent: UInt64 = 0
    private(set) var failed: UInt64 = 0
    /// Known time to the moment the message is handed to ZeroMQ: the daemon's own latency.
    let latency = LatencyHistogram()

    init(context: ZMQContext, endpoint: String, highWaterMark: Int, subjects: SubjectTable) throws(ZMQError) {
        socket = try context.socket(.pub)
        try socket.setSendHighWaterMark(highWaterMark)
        try socket.setLinger(milliseconds: 0)
        try socket.bind(endpoint)
        self.subjects = subjects
        subjectSeq = [UInt64](repeating: 0, count: 4096)
        streamOf = [UInt32](repeating: 0, count: 4096)
    }

    /// The stream a subject belongs to: its first token (`MD`, `TRADE`, `ALERT`, `RISK`, `SYS`). Each stream has
    /// its own gapless `seq`, so a market-data subscriber never sees holes where alerts or trades went by.
    private func stream(of id: Int) -> Int {
        if streamOf[id] == 0 {
            let bytes = subjects.entry(SubjectID(id))
            let root = String(decoding: bytes.prefix { $0 != UInt8(ascii: ".") }, as: UTF8.self)
            if let index = streamIndex[root] {
                streamOf[id] = index + 1
            } else {
                let index = UInt32(streamSeq.count)
                streamIndex[root] = index
                streamSeq.append(0)
                streamOf[id] = index + 1
            }
        }
        return Int(streamOf[id] - 1)
    }

    deinit { payload.deallocate() }

    /// Sends one event; counts (never throws on) a failed send so one bad moment cannot stop the feed.
    func send(_ event: Event) {
        let id = Int(event.subjectID)
        if id >= subjectSeq.count {
            let grown = max(id + 1, subjectSeq.count * 2)
            subjectSeq.append(contentsOf: repeatElement(0, count: grown - subjectSeq.count))
            streamOf.append(contentsOf: repeatElement(0, count: grown - streamOf.count))
        }
        subjectSeq[id] &+= 1
        let s = stream(of: id)
        streamSeq[s] &+= 1
        var wire = event
        wire.seq = streamSeq[s]
        WireCodec.encode(wire, subjectSeq: subjectSeq[id], into: payload)
        do {
            try socket.send(subjects.entry(event.subjectID), more: true)
            try socket.send(UnsafeRawBufferPointer(start: payload, count: WireCodec.payloadSize))
            sent &+= 1
            latency.record(nanos: Nanos.now().rawValue &- event.knownTime.rawValue)
        } catch {
            failed &+= 1
        }
    }
}
