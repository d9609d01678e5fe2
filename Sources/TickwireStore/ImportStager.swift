import TickwireCore

/// An import's rows held in memory per partition and sealed from there into the import's staging store.
///
/// No append log is written and read back: an import is one transaction (a crash discards it whole), so the log's
/// durability would buy nothing, and its bytes would only be decoded again to seal them. A date that arrives
/// whole within `heldRows` is encoded once, as its sealed segment, with no merge. Past `heldRows` rows held, the
/// largest partition held is sealed as a chunk (memory stays bounded whatever the file's size), and `finish`
/// merges a date's chunks as a seal does (when it holds at most `compactRows` rows).
///
/// Partitioning is the `StoreWriter`'s: the UTC date of the event time, and the subject's root. The rows a
/// partition's segment or chunk holds, and their order, are exactly those the writer's logs would have held, so
/// the sealed columns are the same. Used by one thread.
final class ImportStager: EventSink {
    let directory: String
    let subjects: SubjectTable
    let heldRows: Int
    let compactRows: Int
    /// Events taken.
    @exclusivity(unchecked) private(set) var appended: UInt64 = 0
    /// The first write that failed; the source is stopped through `stop`, and the import fails.
    @exclusivity(unchecked) private(set) var error: StoreError?
    private let stop: StopSignal

    /// One partition's rows not yet sealed, with subject ids local to them (indexing `texts`).
    private final class Held {
        let key: PartitionKey
        /// Global `SubjectID` -> local id + 1 (0: not in `texts` yet).
        @exclusivity(unchecked) var localOf: [UInt32] = []
        var texts: [String] = []
        @exclusivity(unchecked) var events: [Event] = []
        /// Chunks sealed so far: their generations are 1 through `chunks`.
        var chunks: UInt64 = 0
        init(key: PartitionKey) { self.key = key }
    }
    private var held: [PartitionKey: Held] = [:]
    @exclusivity(unchecked) private var heldCount = 0
    @exclusivity(unchecked) private var router: PartitionRouter
    /// The partition of the previous event.
    @exclusivity(unchecked) private var last: Held?

    init(directory: String, subjects: SubjectTable, heldRows: Int, compactRows: Int, stop: StopSignal) {
        self.directory = directory
        self.subjects = subjects
        router = PartitionRouter(subjects: subjects)
        self.heldRows = max(1, heldRows)
        self.compactRows = compactRows
        self.stop = stop
    }

    func emit(_ event: Event) { take(event) }

    func emit(batch: UnsafeBufferPointer<Event>) {
        for e in batch { take(e) }
    }

    @inline(__always)
    private func take(_ e: Event) {
        guard error == nil else { return }
        appended &+= 1
        let id = Int(e.subjectID)
        if let key = router.key(for: e, hasCurrent: last != nil) {
            if let h = held[key] { last = h } else { let h = Held(key: key); held[key] = h; last = h }
            router.enter()
        }
        let h = last.unsafelyUnwrapped
        var row = e
        if id < h.localOf.count, h.localOf[id] != 0 {
            row.subjectID = h.localOf[id] - 1
        } else {
            if id >= h.localOf.count { h.localOf.append(contentsOf: repeatElement(0, count: id + 1 - h.localOf.count)) }
            h.texts.append(subjects.text(e.subjectID))
            h.localOf[id] = UInt32(h.texts.count)
            row.subjectID = UInt32(h.texts.count - 1)
        }
        h.events.append(row)
        heldCount += 1
        if heldCount > heldRows, let largest = held.values.max(by: { $0.events.count < $1.events.count }) {
            do { try sealChunk(largest) } catch { self.error = error; stop.raise() }
        }
    }

    /// Seals what a partition holds as its next chunk and lets go of it.
    private func sealChunk(_ h: Held) throws(StoreError) {
        guard !h.events.isEmpty else { return }
        let dir = directory + "/" + h.key.relativePath
        try FS.makeDirectories(dir)
        let image = SegmentImage.build(subjects: h.texts, events: h.events, generation: h.chunks + 1)
        try Sealing.writeSegment(image, dir: dir, name: Layout.chunkName(h.chunks + 1))
        h.chunks += 1
        heldCount -= h.events.count
        h.events = []
        h.texts = []
        h.localOf = []
    }

    /// Seals everything held: a partition that arrived whole as its segment, one sealed in chunks as a last chunk;
    /// then (with nothing held any more) merges each chunked date as `Sealing.seal` does.
    /// - Throws: the first `StoreError` met while taking events or sealing.
    func finish() throws(StoreError) {
        if let error { throw error }
        var chunked = [PartitionKey]()
        for key in held.keys.sorted() {
            let h = held[key]!
            held[key] = nil
            if h.chunks > 0 {
                try sealChunk(h)
                chunked.append(key)
            } else if !h.events.isEmpty {
                let dir = directory + "/" + key.relativePath
                try FS.makeDirectories(dir)
                let image = SegmentImage.build(subjects: h.texts, events: h.events, generation: 1)
                h.events = []
                try Sealing.writeSegment(image, dir: dir, name: Layout.segmentName(1))
            }
        }
        heldCount = 0
        last = nil
        for key in chunked {
            try Sealing.seal(store: directory, key: key, compactRows: compactRows, report: StoreWriter.printToStandardError)
        }
    }
}
