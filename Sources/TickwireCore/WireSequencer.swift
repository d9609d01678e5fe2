/// Numbers messages the way every Tickwire publisher does (docs/PROTOCOL.md): `seq` gapless per stream — the
/// subject's first token (`MD`, `TRADE`, `ALERT`, `RISK`, `SYS`) — and `subject_seq` gapless per subject, both
/// from 1. The live ZeroMQ publisher, `tickwire replay` and `tickwire decode` share it, so their output reads alike.
///
/// One owner at a time; subject ids index flat arrays, so numbering a message allocates nothing once its subject
/// has been seen.
public struct WireSequencer {
    private var subjectSeq: [UInt64] = []
    /// Per subject id: 1 + the index of its stream in `streamSeq`; 0 until first seen.
    private var streamOf: [UInt32] = []
    private var streamSeq: [UInt64] = []
    private var streamIndex: [String: UInt32] = [:]
    /// For callers that have subject texts rather than ids (a replay of stored events).
    private var localIDs: [String: SubjectID] = [:]

    public init() {}

    /// The numbers of the next message on subject `id`, whose text is `subject`.
    public mutating func next(_ id: SubjectID, subject: UnsafeRawBufferPointer) -> (seq: UInt64, subjectSeq: UInt64) {
        let i = Int(id)
        if i >= subjectSeq.count {
            let grown = max(i + 1, subjectSeq.count * 2, 1024)
            subjectSeq.append(contentsOf: repeatElement(0, count: grown - subjectSeq.count))
            streamOf.append(contentsOf: repeatElement(0, count: grown - streamOf.count))
        }
        if streamOf[i] == 0 {
            let root = String(decoding: subject.prefix { $0 != UInt8(ascii: ".") }, as: UTF8.self)
            let stream = streamIndex[root, default: UInt32(streamSeq.count)]
            if stream == streamSeq.count {
                streamIndex[root] = stream
                streamSeq.append(0)
            }
            streamOf[i] = stream + 1
        }
        let s = Int(streamOf[i] - 1)
        streamSeq[s] &+= 1
        subjectSeq[i] &+= 1
        return (streamSeq[s], subjectSeq[i])
    }

    /// The numbers of the next message on a subject given by its text.
    public mutating func next(subject: String) -> (seq: UInt64, subjectSeq: UInt64) {
        let id = localIDs[subject] ?? SubjectID(localIDs.count)
        localIDs[subject] = id
        var text = subject
        return text.withUTF8 { next(id, subject: UnsafeRawBufferPointer($0)) }
    }
}
