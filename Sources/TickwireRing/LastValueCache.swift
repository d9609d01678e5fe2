import CTickwireSys
import Synchronization
import TickwireCore

/// The latest QUOTE, TRADE and STATUS per subject, as the producer published them: what a lapped lossy consumer
/// resynchronises from.
///
/// One writer (the ring's producer) and any number of readers. Each entry is a seqlock: a version word (odd
/// while the writer is mid-update) and the event as eight atomic words, so readers never block the writer and
/// retry the rare read that overlapped a write. Storage is preallocated for `maxSubjects` subject ids; events
/// whose subject id is beyond it are not cached and are counted in `overflowed`.
public final class LastValueCache: @unchecked Sendable {
    /// Words per entry: version, eight event words, padding to 80 bytes.
    @usableFromInline static let entryWords = 10
    @usableFromInline static let kinds = 3

    public let maxSubjects: Int
    @usableFromInline let entries: AtomicWords
    /// Entry indexes in first-written order, so a resync visits only live entries.
    @usableFromInline let touched: AtomicWords
    @usableFromInline let touchedCount = Atomic<Int>(0)
    @usableFromInline let overflowCount = Atomic<UInt64>(0)

    /// - Parameter maxSubjects: subject ids `0..<maxSubjects` are cached (three entries each).
    public init(maxSubjects: Int) {
        precondition(maxSubjects > 0 && maxSubjects <= 1 << 24, "maxSubjects \(maxSubjects) is out of range 1...2^24")
        self.maxSubjects = maxSubjects
        entries = AtomicWords(count: maxSubjects * LastValueCache.kinds * LastValueCache.entryWords)
        touched = AtomicWords(count: maxSubjects * LastValueCache.kinds)
    }

    @inlinable @inline(__always)
    static func kindIndex(_ kind: EventKind) -> Int? {
        switch kind {
        case .quote: 0
        case .trade: 1
        case .status: 2
        default: nil
        }
    }

    /// Stores `event` if it is a TRADE, QUOTE or STATUS. Writer (the ring's producer) only.
    /// - Complexity: O(1); no allocation, no lock.
    @inlinable @inline(__always)
    public func update(_ event: Event) {
        guard let k = LastValueCache.kindIndex(event.kind) else { return }
        guard Int(event.subjectID) < maxSubjects else {
            overflowCount.store(overflowCount.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            return
        }
        let index = Int(event.subjectID) &* LastValueCache.kinds &+ k
        let entry = entries.base + index &* LastValueCache.entryWords
        let version = entry[0].load(ordering: .relaxed)
        entry[0].store(version &+ 1, ordering: .relaxed)
        // Orders the odd version before the event words: a reader that sees new words sees the odd version.
        atomicMemoryFence(ordering: .releasing)
        (entry + 1).storeEvent(event)
        entry[0].store(version &+ 2, ordering: .releasing)
        if version == 0 { noteFirstWrite(index) }
    }

    @usableFromInline
    func noteFirstWrite(_ index: Int) {
        let n = touchedCount.load(ordering: .relaxed)
        touched[n].pointee.store(UInt64(index), ordering: .relaxed)
        touchedCount.store(n + 1, ordering: .releasing)
    }

    /// How many entries hold a value.
    public var count: Int { touchedCount.load(ordering: .acquiring) }

    /// Events not cached because their subject id is `maxSubjects` or more.
    public var overflowed: UInt64 { overflowCount.load(ordering: .relaxed) }

    /// The latest event of `kind` (TRADE, QUOTE or STATUS) on `subjectID`, if any.
    public func latest(subjectID: SubjectID, kind: EventKind) -> Event? {
        guard let k = LastValueCache.kindIndex(kind), Int(subjectID) < maxSubjects else { return nil }
        return read(Int(subjectID) * LastValueCache.kinds + k)
    }

    /// A consistent copy of entry `index`, or nil while it was never written.
    @usableFromInline
    func read(_ index: Int) -> Event? {
        let entry = entries.base + index &* LastValueCache.entryWords
        var tries = 0
        while true {
            let before = entry[0].load(ordering: .acquiring)
            if before == 0 { return nil }
            if before & 1 == 0 {
                let e = (entry + 1).loadEvent()
                atomicMemoryFence(ordering: .acquiring)
                if entry[0].load(ordering: .relaxed) == before { return e }
            }
            tries += 1
            if tries < 64 { tw_cpu_relax() } else { yieldThread() }
        }
    }

    /// Calls `body` with every cached event whose sequence is at most `maxSequence`, in first-cached order.
    /// Entries rewritten after `maxSequence` are skipped: the caller will see their newer events anyway.
    public func forEachEntry(upTo maxSequence: UInt64 = .max, _ body: (Event) -> Void) {
        let n = touchedCount.load(ordering: .acquiring)
        for i in 0..<n {
            guard let e = read(Int(touched[i].pointee.load(ordering: .relaxed))), e.seq <= maxSequence else { continue }
            body(e)
        }
    }
}
