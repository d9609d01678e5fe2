import TickwireClient
import TickwireCore

/// The last payload a publisher sent for every subject — for BOOK, for every side and level — kept on the
/// publishing thread itself (the NATS thread; the ZeroMQ publisher when the snapshot socket is on), so a snapshot
/// it serves between two batches is exactly what it had published at that moment (docs/PROTOCOL.md, "Snapshot").
/// GAP notices and GAP events are not values and are left out.
///
/// One flat array of 72-byte slots; a subject's slot is found by its id (a book level's through a dictionary),
/// so an update is a copy, with no allocation once the slot exists.
struct PublishedLastValues {
    private var slotOfSubject: [Int32] = []
    private var bookSlots: [UInt64: Int32] = [:]
    private var slotSubject: [SubjectID] = []
    private var storage: [UInt8] = []

    var count: Int { slotSubject.count }

    mutating func update(_ id: SubjectID, _ payload: UnsafeRawBufferPointer) {
        let kind = payload[1]
        if kind == EventKind.gap.rawValue { return }
        let slot: Int
        if kind == EventKind.book.rawValue {
            let level = UInt64(truncatingIfNeeded: payload.loadUnaligned(fromByteOffset: 56, as: UInt64.self)) & 0xff_ffff
            let key = UInt64(id) << 32 | UInt64(payload[2]) << 24 | level
            if let s = bookSlots[key] { slot = Int(s) } else { slot = newSlot(id); bookSlots[key] = Int32(slot) }
        } else {
            let i = Int(id)
            if i >= slotOfSubject.count {
                slotOfSubject.append(contentsOf: repeatElement(-1, count: max(i + 1, slotOfSubject.count * 2, 1024) - slotOfSubject.count))
            }
            if slotOfSubject[i] >= 0 { slot = Int(slotOfSubject[i]) } else { slot = newSlot(id); slotOfSubject[i] = Int32(slot) }
        }
        storage.withUnsafeMutableBytes { dst in
            (dst.baseAddress! + slot * WireCodec.payloadSize).copyMemory(from: payload.baseAddress!, byteCount: WireCodec.payloadSize)
        }
    }

    private mutating func newSlot(_ id: SubjectID) -> Int {
        slotSubject.append(id)
        storage.append(contentsOf: repeatElement(0, count: WireCodec.payloadSize))
        return slotSubject.count - 1
    }

    /// The reply chunks for `patterns`: every slot whose subject one of them matches.
    func snapshot(matching patterns: [SubjectPattern], subjects: SubjectTable) -> [[UInt8]] {
        var texts: [SubjectID: (String, Bool)] = [:]
        return storage.withUnsafeBytes { all in
            var entries: [(subject: [UInt8], payload: UnsafeRawBufferPointer)] = []
            for (slot, id) in slotSubject.enumerated() {
                let (text, wanted) = texts[id] ?? {
                    let t = subjects.text(id)
                    let v = (t, patterns.contains { $0.matches(subjectText: t) })
                    texts[id] = v
                    return v
                }()
                guard wanted else { continue }
                entries.append((Array(text.utf8), UnsafeRawBufferPointer(rebasing: all[(slot * WireCodec.payloadSize)..<((slot + 1) * WireCodec.payloadSize)])))
            }
            return SnapshotCodec.chunks(entries)
        }
    }
}
