import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
///
/// A partition's rows are written once, into a mapping reserved for the most a partition can hold (`Rows`): an
/// array grown by doubling copied every row again and took fresh pages for each copy, ~2 s of 5.5M rows on the
/// parse's calling thread (docs/BENCH-HISTORY.md, T2).
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
        let rows: Rows<Event>
        /// Each row's subject, and the rows that are busts, as they arrived: sealing sorts by these without
        /// reading the rows again (`SegmentImage.Arrivals`).
        let subjectOf: Rows<UInt32>
        var busts: [Int] = []
        /// Chunks sealed so far: their generations are 1 through `chunks`.
        var chunks: UInt64 = 0
        init(key: PartitionKey, capacity: Int) {
            self.key = key
            rows = Rows(capacity: capacity)
            subjectOf = Rows(capacity: capacity)
        }

        /// Seals the rows held (the rows and what was learnt of them as they arrived).
        func build(generation: UInt64) -> SegmentImage {
            rows.withRows { events in
                subjectOf.withRows { subjects in
                    SegmentImage.build(subjects: texts, rows: events, arrivals: .init(subjects: subjects, busts: busts),
                                       generation: generation)
                }
            }
        }

        /// Forgets the rows held and gives their pages back.
        func removeAll() {
            rows.removeAll()
            subjectOf.removeAll()
            busts = []
        }
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

    func emit(_ event: Event) {
        withUnsafePointer(to: event) { emit(batch: UnsafeBufferPointer(start: $0, count: 1)) }
    }

    /// Takes the batch a run of one partition at a time (the partition's object held once per run, not per row).
    func emit(batch: UnsafeBufferPointer<Event>) {
        var i = 0
        while i < batch.count && error == nil {
            if let key = router.key(for: batch[i], hasCurrent: last != nil) {
                if let h = held[key] { last = h } else { let h = Held(key: key, capacity: heldRows + 1); held[key] = h; last = h }
                router.enter()
            }
            let h = last.unsafelyUnwrapped
            repeat {
                take(batch[i], into: h)
                i &+= 1
            } while i < batch.count && error == nil && router.key(for: batch[i], hasCurrent: true) == nil
        }
    }

    @inline(__always)
    private func take(_ e: Event, into h: Held) {
        appended &+= 1
        let id = Int(e.subjectID)
        var row = e
        if id < h.localOf.count, h.localOf[id] != 0 {
            row.subjectID = h.localOf[id] - 1
        } else {
            if id >= h.localOf.count { h.localOf.append(contentsOf: repeatElement(0, count: id + 1 - h.localOf.count)) }
            h.texts.append(subjects.text(e.subjectID))
            h.localOf[id] = UInt32(h.texts.count)
            row.subjectID = UInt32(h.texts.count - 1)
        }
        if row.kind == .bust { h.busts.append(h.rows.count) }
        h.rows.append(row)
        h.subjectOf.append(row.subjectID)
        heldCount += 1
        if heldCount > heldRows, let largest = held.values.max(by: { $0.rows.count < $1.rows.count }) {
            do { try sealChunk(largest) } catch { self.error = error; stop.raise() }
        }
    }

    /// Seals what a partition holds as its next chunk and lets go of it.
    private func sealChunk(_ h: Held) throws(StoreError) {
        guard h.rows.count > 0 else { return }
        let dir = directory + "/" + h.key.relativePath
        try FS.makeDirectories(dir)
        let image = h.build(generation: h.chunks + 1)
        try Sealing.writeSegment(image, dir: dir, name: Layout.chunkName(h.chunks + 1))
        h.chunks += 1
        heldCount -= h.rows.count
        h.removeAll()
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
            } else if h.rows.count > 0 {
                let dir = directory + "/" + key.relativePath
                try FS.makeDirectories(dir)
                let image = h.build(generation: 1)
                // The rows' pages are given back on a thread of their own while the files are written.
                let released = BackgroundValue { h.removeAll() }
                try Sealing.writeSegment(image, dir: dir, name: Layout.segmentName(1))
                released.value
            }
        }
        heldCount = 0
        last = nil
        for key in chunked {
            try Sealing.seal(store: directory, key: key, compactRows: compactRows, report: StoreWriter.printToStandardError)
        }
    }
}

/// A partition's rows (or what is kept of each row) in an anonymous mapping reserved whole up front
/// (`MAP_NORESERVE`: only the pages written, and at most 2 MiB ahead of them, take memory, and `removeAll` gives
/// them back), so a row is written once and never moved to grow. Huge pages are not asked for: on the 2-core VM
/// measured, zeroing fresh 2 MiB pages took a third of the import's CPU (perf, 5.5M rows), far more than the
/// 4 KiB faults. If the reservation is refused (a kernel that counts it against a strict commit limit), a
/// smaller one grows by copying.
final class Rows<Row> {
    private var base: UnsafeMutablePointer<Row>
    private var capacity: Int
    private(set) var count = 0

    init(capacity: Int) {
        let wanted = max(1, capacity), small = min(wanted, 1 << 16)
        if let p = Rows.map(wanted) { (base, self.capacity) = (p, wanted) }
        else if let p = Rows.map(small) { (base, self.capacity) = (p, small) }
        else { fatalError("no memory for \(small) rows") }
    }

    deinit { munmap(base, capacity * MemoryLayout<Row>.stride) }

    @inline(__always)
    func append(_ e: Row) {
        if count == capacity { grow() }
        if count % Rows.populated == 0 { populate() }
        (base + count).initialize(to: e)
        count &+= 1
    }

    /// Rows whose pages are mapped in at once, ahead of their writes: one call instead of a fault a page.
    private static var populated: Int { max(1, (2 << 20) / MemoryLayout<Row>.stride) }

    /// Maps in the pages of the next `populated` rows (MADV_POPULATE_WRITE, Linux 5.14; before it, and if it
    /// fails, the writes fault them in one by one as before).
    private func populate() {
        let rows = min(Rows.populated, capacity - count)
        _ = madvise(base + count, rows * MemoryLayout<Row>.stride, 23)
    }

    /// - warning: the buffer is valid only during `body`.
    func withRows<R>(_ body: (UnsafeBufferPointer<Row>) -> R) -> R {
        body(UnsafeBufferPointer(start: base, count: count))
    }

    /// Forgets the rows and gives their pages back (the reservation stays).
    func removeAll() {
        let bytes = count * MemoryLayout<Row>.stride
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        _ = madvise(base, (bytes + page - 1) / page * page, MADV_DONTNEED)
        count = 0
    }

    private func grow() {
        let bigger = capacity * 2
        guard let p = Rows.map(bigger) else { fatalError("no memory for \(bigger) rows") }
        p.initialize(from: base, count: count)
        munmap(base, capacity * MemoryLayout<Row>.stride)
        base = p
        capacity = bigger
    }

    private static func map(_ rows: Int) -> UnsafeMutablePointer<Row>? {
        let bytes = rows * MemoryLayout<Row>.stride
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              p != MAP_FAILED else { return nil }
        return p.bindMemory(to: Row.self, capacity: rows)
    }
}
