import CTickwireSys
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
/// Most rows are never held whole: while a subject's rows come in (event time, known time) order with no second
/// version of a trade and no bust in the partition, they are encoded a block at a time as they arrive (`Stream`),
/// into the very blocks sealing would have made from them (the rows were staged, faulting in 64 bytes of fresh
/// memory each, and read back in subject order; docs/BENCH-HISTORY.md, T5). A subject that stops qualifying has its
/// blocks decoded back and is staged from there. Staged rows are written once, into a mapping reserved for the
/// most a partition can hold (`Rows`; docs/BENCH-HISTORY.md, T2).
final class ImportStager: EventSink {
    let directory: String
    let subjects: SubjectTable
    let heldRows: Int
    let compactRows: Int
    /// Events taken.
    @exclusivity(unchecked) private(set) var appended: UInt64 = 0
    /// Blocks encoded as their rows arrived, and blocks decoded back when their subject stopped qualifying.
    @exclusivity(unchecked) private(set) var blocksStreamed = 0, blocksDecoded = 0
    /// The first write that failed; the source is stopped through `stop`, and the import fails.
    @exclusivity(unchecked) private(set) var error: StoreError?
    private let stop: StopSignal

    /// A subject's rows encoded a block at a time as they arrive, as long as they come in order and without
    /// versions: such rows are never staged, sorted or read again (docs/BENCH-HISTORY.md, T5). The blocks are the
    /// ones sealing the staged rows would have made, and decode back to those rows if the subject stops qualifying.
    private struct Stream {
        var part = EncodedPart(streaming: ())
        /// The block being filled: room for `blockRows` rows, taken at the subject's first row (`Held` frees it).
        var pending: UnsafeMutablePointer<Event>?
        var pendingCount = 0
        var last = (eventTime: Int64.min, knownTime: Int64.min)
        /// Trade ids in the current run of one event time: a repeated one there is a correction.
        var runIDs: [Int64] = []
        /// False once the subject's rows are staged instead.
        var live = true

        /// Whether the subject stays streamable with `e` next: in (event time, known time) order, so that sealing
        /// would not reorder it, and not a second version of a trade id in the run of its event time, so that
        /// `Versions.resolve` would find no exception (busts end streaming for the whole partition).
        @inline(__always)
        mutating func accepts(_ e: Event) -> Bool {
            let t = e.eventTime.rawValue, k = e.knownTime.rawValue
            if t < last.eventTime || (t == last.eventTime && k < last.knownTime) { return false }
            if t != last.eventTime && !runIDs.isEmpty { runIDs.removeAll(keepingCapacity: true) }
            if e.kind == .trade && e.c != 0 {
                if runIDs.count >= 64 || runIDs.contains(e.c) { return false }
                runIDs.append(e.c)
            }
            last = (t, k)
            return true
        }

        /// Adds a row to the block being filled, and encodes the block when it is full.
        @inline(__always)
        mutating func append(_ e: Event, values: UnsafeMutablePointer<Int64>, scratch: UnsafeMutablePointer<Int64>) {
            if pending == nil { pending = .allocate(capacity: SegmentImage.blockRows) }
            (pending.unsafelyUnwrapped + pendingCount).initialize(to: e)
            pendingCount &+= 1
            if pendingCount == SegmentImage.blockRows { flush(values: values, scratch: scratch) }
        }

        /// Encodes the rows pending as the part's next block.
        mutating func flush(values: UnsafeMutablePointer<Int64>, scratch: UnsafeMutablePointer<Int64>) {
            guard let pending, pendingCount > 0 else { return }
            part.appendStreamed(UnsafeBufferPointer(start: pending, count: pendingCount), values: values, scratch: scratch)
            pendingCount = 0
        }

        /// Frees the block being filled.
        mutating func release() {
            pending?.deallocate()
            pending = nil
            pendingCount = 0
        }
    }

    /// One partition's rows not yet sealed, with subject ids local to them (indexing `texts`): each subject's
    /// either streamed (`streams`) or staged (`rows`).
    private final class Held {
        let key: PartitionKey
        /// Global `SubjectID` -> local id + 1 (0: not in `texts` yet).
        @exclusivity(unchecked) var localOf: [UInt32] = []
        var texts: [String] = []
        /// By local id: the subject's stream (`live` false when its rows are staged).
        @exclusivity(unchecked) var streams: [Stream] = []
        /// False once a bust arrived (a bust voids trades of other subjects): every subject is then staged.
        var streaming = true
        /// Rows taken since the last seal, streamed and staged.
        var count = 0
        let rows: Rows<Event>
        /// Each staged row's subject, and the rows that are busts, as they arrived: sealing sorts by these without
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

        deinit { for i in streams.indices { streams[i].release() } }

        /// Stages a streamed subject: its blocks decoded back and the rows of its unfinished block.
        func stage(_ local: Int) {
            guard streams[local].live else { return }
            var stream = streams[local]
            streams[local] = Stream(live: false)
            let unfinished = stream.pending.map { Array(UnsafeBufferPointer(start: $0, count: stream.pendingCount)) } ?? []
            stream.release()
            for e in stream.part.decodedRows(subject: SubjectID(local)) + unfinished {
                rows.append(e)
                subjectOf.append(UInt32(local))
            }
        }

        /// Seals what is held: streamed subjects' last blocks encoded, then every subject together.
        func build(generation: UInt64, values: UnsafeMutablePointer<Int64>, scratch: UnsafeMutablePointer<Int64>) -> SegmentImage {
            var streamed = [Int: EncodedPart]()
            for local in streams.indices where streams[local].live {
                streams[local].flush(values: values, scratch: scratch)
                streams[local].release()
                streamed[local] = streams[local].part
            }
            return rows.withRows { events in
                subjectOf.withRows { subjects in
                    SegmentImage.build(subjects: texts, rows: events,
                                       arrivals: .init(subjects: subjects, busts: busts, streamed: streamed),
                                       generation: generation)
                }
            }
        }

        /// Forgets the rows held and gives their pages back; the next rows begin a new chunk.
        func removeAll() {
            rows.removeAll()
            subjectOf.removeAll()
            busts = []
            texts = []
            localOf = []
            for i in streams.indices { streams[i].release() }
            streams = []
            streaming = true
            count = 0
        }
    }
    private var held: [PartitionKey: Held] = [:]
    @exclusivity(unchecked) private var heldCount = 0
    @exclusivity(unchecked) private var router: PartitionRouter
    /// The partition of the previous event.
    @exclusivity(unchecked) private var last: Held?
    /// A block's values and a codec's scratch, for the streams' blocks.
    private let values = UnsafeMutablePointer<Int64>.allocate(capacity: SegmentImage.blockRows * Column.count)
    private let scratch = UnsafeMutablePointer<Int64>.allocate(capacity: SegmentImage.blockRows)

    init(directory: String, subjects: SubjectTable, heldRows: Int, compactRows: Int, stop: StopSignal) {
        self.directory = directory
        self.subjects = subjects
        router = PartitionRouter(subjects: subjects)
        self.heldRows = max(1, heldRows)
        self.compactRows = compactRows
        self.stop = stop
    }

    deinit {
        values.deallocate()
        scratch.deallocate()
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
                if i &+ Self.prefetchRows < batch.count { prefetch(batch[i &+ Self.prefetchRows], in: h) }
                take(batch[i], into: h)
                i &+= 1
            } while i < batch.count && error == nil && router.key(for: batch[i], hasCurrent: true) == nil
        }
    }

    /// How many rows ahead the line a streamed row goes to is asked for: rows of hundreds of subjects land in
    /// as many blocks, each store a cache miss that in-order stores could not overlap (docs/BENCH-HISTORY.md, T5).
    private static let prefetchRows = 8

    @inline(__always)
    private func prefetch(_ e: Event, in h: Held) {
        let id = Int(e.subjectID)
        guard id < h.localOf.count, h.localOf[id] != 0 else { return }
        let l = Int(h.localOf[id] &- 1)
        if let p = h.streams[l].pending { tw_prefetch_write(p + h.streams[l].pendingCount) }
    }

    @inline(__always)
    private func take(_ e: Event, into h: Held) {
        appended &+= 1
        let id = Int(e.subjectID)
        var row = e
        let local: Int
        if id < h.localOf.count, h.localOf[id] != 0 {
            local = Int(h.localOf[id] - 1)
        } else {
            if id >= h.localOf.count { h.localOf.append(contentsOf: repeatElement(0, count: id + 1 - h.localOf.count)) }
            h.texts.append(subjects.text(e.subjectID))
            h.streams.append(Stream(live: h.streaming))
            h.localOf[id] = UInt32(h.texts.count)
            local = h.texts.count - 1
        }
        row.subjectID = UInt32(local)
        if row.kind == .bust && h.streaming {
            for s in h.streams.indices where h.streams[s].live { blocksDecoded += h.streams[s].part.blocks.count; h.stage(s) }
            h.streaming = false
        }
        if h.streams[local].live {
            if h.streams[local].accepts(row) {
                if h.streams[local].pendingCount == SegmentImage.blockRows - 1 { blocksStreamed += 1 }
                h.streams[local].append(row, values: values, scratch: scratch)
                taken(h)
                return
            }
            blocksDecoded += h.streams[local].part.blocks.count
            h.stage(local)
        }
        if row.kind == .bust { h.busts.append(h.rows.count) }
        h.rows.append(row)
        h.subjectOf.append(row.subjectID)
        taken(h)
    }

    @inline(__always)
    private func taken(_ h: Held) {
        h.count += 1
        heldCount += 1
        if heldCount > heldRows, let largest = held.values.max(by: { $0.count < $1.count }) {
            do { try sealChunk(largest) } catch { self.error = error; stop.raise() }
        }
    }

    /// Seals what a partition holds as its next chunk and lets go of it.
    private func sealChunk(_ h: Held) throws(StoreError) {
        guard h.count > 0 else { return }
        let dir = directory + "/" + h.key.relativePath
        try FS.makeDirectories(dir)
        let image = h.build(generation: h.chunks + 1, values: values, scratch: scratch)
        try Sealing.writeSegment(image, dir: dir, name: Layout.chunkName(h.chunks + 1))
        h.chunks += 1
        heldCount -= h.count
        h.removeAll()
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
            } else if h.count > 0 {
                let dir = directory + "/" + key.relativePath
                try FS.makeDirectories(dir)
                let image = h.build(generation: 1, values: values, scratch: scratch)
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
