import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bytes a segment reader reads: a memory map of a sealed file, or a copy of an in-memory image.
final class OwnedBytes {
    let bytes: UnsafeRawBufferPointer
    init(_ array: [UInt8]) {
        let p = UnsafeMutableRawBufferPointer.allocate(byteCount: max(array.count, 1), alignment: 64)
        array.withUnsafeBytes { p.copyMemory(from: $0) }
        bytes = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(p)[0..<array.count])
    }
    deinit { UnsafeMutableRawPointer(mutating: bytes.baseAddress!).deallocate() }
}

/// One decoded block of rows: a column each, `count` rows. Reused block after block; owned by one reader loop.
/// - warning: the column pointers are valid while the buffer lives and hold the current block only.
public final class BlockBuffer {
    public static let capacity = SegmentImage.blockRows
    /// Rows each column holds: `capacity`, or fewer for a cursor over a subject known to have fewer rows.
    @usableFromInline let stride: Int
    @usableFromInline let storage: UnsafeMutablePointer<Int64>
    public internal(set) var count = 0

    public convenience init() { self.init(rows: BlockBuffer.capacity) }

    init(rows: Int) {
        stride = max(1, min(rows, BlockBuffer.capacity))
        storage = .allocate(capacity: stride * Column.count)
        storage.initialize(repeating: 0, count: stride * Column.count)
    }
    deinit { storage.deallocate() }

    @inline(__always) func column(_ c: Column) -> UnsafeMutablePointer<Int64> { storage + c.rawValue &* stride }
    @inlinable public var eventTime: UnsafePointer<Int64> { UnsafePointer(storage) }
    @inlinable public var knownTime: UnsafePointer<Int64> { UnsafePointer(storage + stride) }
    /// kind | flags << 8 | source << 16.
    @inlinable public var tag: UnsafePointer<Int64> { UnsafePointer(storage + 2 &* stride) }
    @inlinable public var a: UnsafePointer<Int64> { UnsafePointer(storage + 3 &* stride) }
    @inlinable public var b: UnsafePointer<Int64> { UnsafePointer(storage + 4 &* stride) }
    @inlinable public var c: UnsafePointer<Int64> { UnsafePointer(storage + 5 &* stride) }
    @inlinable public var d: UnsafePointer<Int64> { UnsafePointer(storage + 6 &* stride) }

    /// Row `i` as an `Event` (subject id 0, seq 0: the store keeps subjects as text and replay numbers events).
    @inlinable
    public func event(_ i: Int) -> Event {
        Event(storedTag: tag[i], eventTime: eventTime[i], knownTime: knownTime[i], a: a[i], b: b[i], c: c[i], d: d[i])
    }
}

extension Event {
    /// A stored row's columns as an event: `tag` is kind | flags << 8 | source << 16 (`packTag`); subject id 0 and
    /// seq 0.
    @inlinable
    init(storedTag t: Int64, eventTime: Int64, knownTime: Int64, a: Int64, b: Int64, c: Int64, d: Int64) {
        self.init(subjectID: 0, kind: EventKind(rawValue: UInt8(truncatingIfNeeded: t)) ?? .gap,
                  flags: UInt8(truncatingIfNeeded: t &>> 8), source: UInt16(truncatingIfNeeded: t &>> 16),
                  eventTime: Nanos(eventTime), knownTime: Nanos(knownTime), a: a, b: b, c: c, d: d)
    }
}

/// Which columns a scan decodes. Event and known time are always decoded (the window and the as-known-at test
/// need them); `c` brings `a` and `d` brings `b` (they are encoded against them). Columns left out hold
/// unspecified values.
public struct StoreColumns: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let eventTime = StoreColumns(rawValue: 1 << 0)
    public static let knownTime = StoreColumns(rawValue: 1 << 1)
    public static let tag = StoreColumns(rawValue: 1 << 2)
    public static let a = StoreColumns(rawValue: 1 << 3)
    public static let b = StoreColumns(rawValue: 1 << 4)
    public static let c = StoreColumns(rawValue: 1 << 5)
    public static let d = StoreColumns(rawValue: 1 << 6)
    public static let all = StoreColumns(rawValue: 0x7f)

    /// With what decoding them requires.
    var closed: StoreColumns {
        var s = self.union([.eventTime, .knownTime])
        if s.contains(.c) { s.insert(.a) }
        if s.contains(.d) { s.insert(.b) }
        return s
    }

    @inline(__always) func has(_ c: Column) -> Bool { rawValue & (1 << UInt8(c.rawValue)) != 0 }
}

/// A read-only view of one segment (docs/STORAGE.md, "Sealed segment"), checked when opened.
final class SegmentReader {
    struct SubjectRange { var firstBlock: Int; var blockCount: Int; var firstRow: Int; var rowCount: Int }
    struct BlockInfo {
        var firstRow: Int; var rows: Int; var subject: Int
        var minEventTime: Int64; var maxEventTime: Int64; var maxKnownTime: Int64
        var firstException: Int; var exceptionCount: Int
    }

    let path: String
    let rows: Int
    let subjects: [String]
    let ranges: [SubjectRange]
    let blockInfos: [BlockInfo]
    private let columns: [UnsafeRawPointer]
    private let columnOffsets: [UnsafePointer<UInt64>]
    private let exceptionRows: UnsafeRawPointer?
    private let owners: [AnyObject]
    /// A composed reader (`compose`): the pieces it reads, and for each of its blocks the piece and the piece's
    /// block. Empty for a reader of one segment.
    let parts: [SegmentReader]
    private let partBlocks: [(part: Int32, block: Int32)]

    /// Segments one reader opened, by directory. A sealed segment or chunk never changes once written, so a reader
    /// that opens a partition again for another pattern (a join's trades, then its quotes) maps and checks each
    /// once.
    final class Opened {
        private var byDirectory = [String: SegmentReader]()

        init() {}

        func open(_ directory: String) throws(StoreError) -> SegmentReader {
            if let s = byDirectory[directory] { return s }
            let s = try SegmentReader.open(directory: directory)
            byDirectory[directory] = s
            return s
        }
    }

    static func open(directory: String) throws(StoreError) -> SegmentReader {
        var files = [String: UnsafeRawBufferPointer](), maps = [MappedFile]()
        for name in ["meta"] + SegmentImage.fileNames {
            let m = try MappedFile(path: directory + "/" + name, populate: true)   // every byte is checked at once
            files[name] = m.bytes
            maps.append(m)
        }
        let segment = try SegmentReader(path: directory, files: files, owners: maps)
        // Checked: from now on the process holds only the pages a read touches (a day's store is gigabytes).
        for m in maps { m.letGo() }
        return segment
    }

    convenience init(image: SegmentImage, path: String) throws(StoreError) {
        var files = [String: UnsafeRawBufferPointer](), owners = [AnyObject]()
        for (name, bytes) in image.files.merging(["meta": image.meta()], uniquingKeysWith: { a, _ in a }) {
            let o = OwnedBytes(bytes)
            files[name] = o.bytes
            owners.append(o)
        }
        try self.init(path: path, files: files, owners: owners)
    }

    private init(path: String, files: [String: UnsafeRawBufferPointer], owners: [AnyObject]) throws(StoreError) {
        self.path = path
        self.owners = owners
        parts = []
        partBlocks = []
        func bad(_ file: String, _ offset: Int, _ why: String) -> StoreError { .corrupt(path: path + "/" + file, offset: offset, reason: why) }
        // meta: magic, version, generation, rows, then (size u64, crc u32, pad u32) per file, then its own CRC.
        let meta = files["meta"]!
        let metaSize = 24 + 16 * SegmentImage.fileNames.count + 4
        guard meta.count == metaSize else { throw bad("meta", 0, "it is \(meta.count) bytes; expected \(metaSize)") }
        guard meta.le(UInt32.self, 0) == SegmentImage.magic else { throw bad("meta", 0, "no segment magic") }
        guard meta.le(UInt32.self, 4) == SegmentImage.version else { throw bad("meta", 4, "unsupported version \(meta.le(UInt32.self, 4))") }
        guard CRC32C.of(UnsafeRawBufferPointer(rebasing: meta[0..<metaSize - 4])) == meta.le(UInt32.self, metaSize - 4) else {
            throw bad("meta", metaSize - 4, "checksum mismatch")
        }
        rows = Int(meta.le(UInt64.self, 16))
        for (i, name) in SegmentImage.fileNames.enumerated() {
            let f = files[name]!
            let size = Int(meta.le(UInt64.self, 24 + 16 * i)), crc = meta.le(UInt32.self, 32 + 16 * i)
            guard f.count == size else { throw bad(name, f.count, "it is \(f.count) bytes; meta says \(size)") }
            guard CRC32C.of(f) == crc else { throw bad(name, 0, "checksum mismatch") }
        }
        // subjects: u16 length + text, in dictionary (text) order.
        let sf = files["subjects"]!
        var subjects = [String](), o = 0
        while o < sf.count {
            guard sf.count - o >= 2 else { throw bad("subjects", o, "a truncated entry") }
            let len = Int(sf.le(UInt16.self, o))
            guard sf.count - o - 2 >= len else { throw bad("subjects", o, "a truncated entry") }
            subjects.append(String(decoding: UnsafeRawBufferPointer(rebasing: sf[o + 2..<o + 2 + len]), as: UTF8.self))
            o += 2 + len
        }
        self.subjects = subjects
        // blocks: header, subject ranges, block entries.
        let bf = files["blocks"]!
        guard bf.count >= 24, bf.le(UInt32.self, 0) == SegmentImage.magic else { throw bad("blocks", 0, "no segment magic") }
        let blockCount = Int(bf.le(UInt32.self, 16)), subjectCount = Int(bf.le(UInt32.self, 20))
        guard subjectCount == subjects.count, bf.count == 24 + 24 * subjectCount + 48 * blockCount,
              Int(bf.le(UInt64.self, 8)) == rows else {
            throw bad("blocks", 16, "\(blockCount) blocks and \(subjectCount) subjects do not fit its \(bf.count) bytes")
        }
        let vf = files["valid_until"]!
        let exceptions = vf.count >= 8 ? Int(vf.le(UInt64.self, 0)) : -1
        guard exceptions >= 0, vf.count == 8 + 16 * exceptions else { throw bad("valid_until", 0, "its count does not fit its size") }
        exceptionRows = vf.baseAddress! + 8
        var ranges = [SubjectRange](), infos = [BlockInfo]()
        for s in 0..<subjectCount {
            let p = 24 + 24 * s
            let r = SubjectRange(firstBlock: Int(bf.le(UInt32.self, p)), blockCount: Int(bf.le(UInt32.self, p + 4)),
                                 firstRow: Int(bf.le(UInt64.self, p + 8)), rowCount: Int(bf.le(UInt64.self, p + 16)))
            guard r.firstBlock + r.blockCount <= blockCount, r.firstRow + r.rowCount <= rows else {
                throw bad("blocks", p, "subject \(s)'s range lies outside the segment")
            }
            ranges.append(r)
        }
        for b in 0..<blockCount {
            let p = 24 + 24 * subjectCount + 48 * b
            let info = BlockInfo(firstRow: Int(bf.le(UInt64.self, p)), rows: Int(bf.le(UInt32.self, p + 8)),
                                 subject: Int(bf.le(UInt32.self, p + 12)), minEventTime: bf.le(Int64.self, p + 16),
                                 maxEventTime: bf.le(Int64.self, p + 24), maxKnownTime: bf.le(Int64.self, p + 32),
                                 firstException: Int(bf.le(UInt32.self, p + 40)), exceptionCount: Int(bf.le(UInt32.self, p + 44)))
            guard info.rows > 0, info.rows <= BlockBuffer.capacity, info.firstRow + info.rows <= rows,
                  info.subject < subjectCount, info.firstException + info.exceptionCount <= exceptions else {
                throw bad("blocks", p, "block \(b) is inconsistent")
            }
            infos.append(info)
        }
        self.ranges = ranges
        self.blockInfos = infos
        // Column files: block count, offsets[blockCount + 1], blocks; every block checked once here.
        var columns = [UnsafeRawPointer](), offsets = [UnsafePointer<UInt64>]()
        for col in Column.all {
            let f = files[col.fileName]!
            guard f.count >= 8 + 8 * (blockCount + 1), Int(f.le(UInt64.self, 0)) == blockCount else {
                throw bad(col.fileName, 0, "its block count does not match the index")
            }
            for b in 0..<blockCount {
                let start = Int(f.le(UInt64.self, 8 + 8 * b)), end = Int(f.le(UInt64.self, 16 + 8 * b))
                guard start <= end, end <= f.count,
                      let (n, bytes) = ColumnCodec.blockSize(f.baseAddress! + start, available: end - start),
                      n == infos[b].rows, bytes == end - start,
                      col.reference != nil || f.load(fromByteOffset: start, as: UInt8.self) != ColumnCodec.Mode.reference.rawValue else {
                    throw bad(col.fileName, start, "block \(b) is malformed")
                }
            }
            columns.append(f.baseAddress!)
            offsets.append((f.baseAddress! + 8).assumingMemoryBound(to: UInt64.self))
        }
        self.columns = columns
        self.columnOffsets = offsets
    }

    /// The subject number of a text, if the segment holds it.
    private(set) lazy var subjectNumbers: [String: Int] = {
        var m = [String: Int](minimumCapacity: subjects.count)
        for (i, s) in subjects.enumerated() { m[s] = i }
        return m
    }()

    /// Decodes the columns of block `b` into `buffer` (all by default).
    @inline(__always)
    func decode(block b: Int, into buffer: BlockBuffer, columns wanted: StoreColumns = .all) {
        if !parts.isEmpty {
            let (p, pb) = partBlocks[b]
            return parts[Int(p)].decode(block: Int(pb), into: buffer, columns: wanted)
        }
        for col in Column.all where wanted.has(col) {
            let start = Int(UInt64(littleEndian: columnOffsets[col.rawValue][b]))
            _ = ColumnCodec.decode(columns[col.rawValue] + start, into: buffer.column(col),
                                   reference: col.reference.map { UnsafePointer(buffer.column($0)) })
        }
        buffer.count = blockInfos[b].rows
    }

    /// Decodes block `b` and keeps, packed at the front of `buffer`, the rows with event time in [from, to)
    /// that are true as known at `asOf` (known time ≤ asOf and not superseded or busted by then).
    /// - Returns: how many rows were kept.
    /// - Parameter allVersions: keep superseded and busted rows too (as each was known when it arrived).
    func read(block b: Int, from: Int64, to: Int64, asOf: Int64, into buffer: BlockBuffer, columns: StoreColumns = .all,
              allVersions: Bool = false) -> Int {
        if !parts.isEmpty {
            let (p, pb) = partBlocks[b]
            return parts[Int(p)].read(block: Int(pb), from: from, to: to, asOf: asOf, into: buffer, columns: columns,
                                      allVersions: allVersions)
        }
        let info = blockInfos[b]
        if info.maxEventTime < from || info.minEventTime >= to { buffer.count = 0; return 0 }
        let columns = columns.closed
        decode(block: b, into: buffer, columns: columns)
        let t = buffer.column(.eventTime)
        var lo = 0, hi = info.rows
        if info.minEventTime < from { lo = lowerBound(t, info.rows, from) }
        if info.maxEventTime >= to { hi = lowerBound(t, info.rows, to) }
        if info.maxKnownTime <= asOf && (info.exceptionCount == 0 || allVersions) {
            if lo > 0 { for col in Column.all where columns.has(col) { let p = buffer.column(col); memmove(p, p + lo, (hi - lo) * 8) } }
            buffer.count = hi - lo
            return hi - lo
        }
        let k = buffer.column(.knownTime)
        var e = info.firstException
        let eEnd = info.firstException + info.exceptionCount
        var kept = 0
        for i in lo..<hi {
            let row = info.firstRow + i
            var until = Int64.max
            while e < eEnd {
                let r = Int(UInt64(littleEndian: exceptionRows.unsafelyUnwrapped.loadUnaligned(fromByteOffset: e * 16, as: UInt64.self)))
                if r < row { e += 1; continue }
                if r == row { until = Int64(littleEndian: exceptionRows.unsafelyUnwrapped.loadUnaligned(fromByteOffset: e * 16 + 8, as: Int64.self)) }
                break
            }
            guard k[i] <= asOf && (until > asOf || until == .max) else { continue }
            if kept != i { for col in Column.all where columns.has(col) { let p = buffer.column(col); p[kept] = p[i] } }
            kept += 1
        }
        buffer.count = kept
        return kept
    }

    /// A reader of several pieces of one partition (its sealed segment, its chunks, the tail built from its logs,
    /// in arrival order) that reads exactly as one segment of all their rows would: the same rows, in the same
    /// order, with the same versions.
    ///
    /// A subject's blocks are the pieces' blocks one after the other when its event times rise from piece to
    /// piece, pieces meeting at one time only in order (`meetInOrder`: then no row of a later piece sorts before
    /// one of an earlier piece, and no correction — same subject, event time and trade id — spans two pieces).
    /// Otherwise (late data, a later piece's row at the meeting time known earlier), and for every subject of a stem with a `.BUST` subject spread over several pieces (a bust voids
    /// trades of its stem, whichever piece holds them), the subject's rows are merged from every piece into a
    /// segment built in memory, which resolves their versions as sealing would. Only subjects `include` accepts
    /// are composed, so a narrow read merges only what it reads.
    /// - Parameter prefix: every subject `include` accepts starts with it (the pattern's literal tokens).
    static func compose(_ pieces: [SegmentReader], path: String, prefix: String = "",
                        include: (String) -> Bool) throws(StoreError) -> SegmentReader {
        var holders = [String: [(piece: Int, subject: Int)]]()
        var bustStems = [Substring: Set<Int>]()  // stem -> pieces holding one of its subjects (stems with a bust)
        for (p, seg) in pieces.enumerated() {
            for s in seg.candidates(prefix) where include(seg.subjects[s]) { holders[seg.subjects[s], default: []].append((p, s)) }
        }
        // Busts only matter to trades read: their stems' `.BUST` subjects, found by binary search.
        let tradeStems = Set(holders.keys.filter { $0.hasSuffix(".TRADE") }.map { Layout.stem($0) })
        for (p, seg) in pieces.enumerated() {
            for stem in tradeStems where seg.subjectIndex(String(stem) + ".BUST") != nil { bustStems[stem, default: []].insert(p) }
        }
        if !bustStems.isEmpty {
            for (p, seg) in pieces.enumerated() {
                for stem in bustStems.keys where seg.subjectIndex(String(stem) + ".TRADE") != nil { bustStems[stem]!.insert(p) }
            }
        }
        var merged = Set<String>()
        let last = BlockBuffer(), first = BlockBuffer()
        for (text, hs) in holders {
            if let spread = bustStems[Layout.stem(text)], spread.count > 1 { merged.insert(text); continue }
            for i in hs.indices.dropFirst() {
                let a = pieces[hs[i - 1].piece], b = pieces[hs[i].piece]
                let ra = a.ranges[hs[i - 1].subject], rb = b.ranges[hs[i].subject]
                guard ra.blockCount > 0, rb.blockCount > 0 else { continue }
                let end = a.blockInfos[ra.firstBlock + ra.blockCount - 1].maxEventTime, start = b.blockInfos[rb.firstBlock].minEventTime
                if end > start || (end == start && !meetInOrder(a, ra.firstBlock + ra.blockCount - 1, b, rb.firstBlock, last, first)) {
                    merged.insert(text); break
                }
            }
        }
        var mergedPiece: SegmentReader?
        if !merged.isEmpty {
            // The merged subjects and, for version resolution, every bust subject of their stems.
            let stems = Set(merged.map { Layout.stem($0) })
            var texts = [String](), number = [String: UInt32]()
            var events = [Event]()
            let buffer = BlockBuffer()
            for seg in pieces {
                for (s, text) in seg.subjects.enumerated()
                where merged.contains(text) || (text.hasSuffix(".BUST") && stems.contains(Layout.stem(text))) {
                    let id: UInt32
                    if let n = number[text] { id = n } else { id = UInt32(texts.count); number[text] = id; texts.append(text) }
                    let r = seg.ranges[s]
                    for b in r.firstBlock..<(r.firstBlock + r.blockCount) {
                        seg.decode(block: b, into: buffer)
                        for i in 0..<buffer.count { var e = buffer.event(i); e.subjectID = id; events.append(e) }
                    }
                }
            }
            mergedPiece = try SegmentReader(image: SegmentImage.build(subjects: texts, events: events, generation: 0),
                                            path: path + " (merged)")
        }
        let all = pieces + (mergedPiece.map { [$0] } ?? [])
        var subjects = [String](), ranges = [SubjectRange](), infos = [BlockInfo](), partBlocks = [(part: Int32, block: Int32)]()
        var rows = 0
        for text in holders.keys.sorted() {
            let from: [(piece: Int, subject: Int)]
            if merged.contains(text), let m = mergedPiece, let s = m.subjectNumbers[text] {
                from = [(all.count - 1, s)]
            } else {
                from = holders[text]!
            }
            let subject = subjects.count
            subjects.append(text)
            let firstBlock = infos.count, firstRow = rows
            for (p, s) in from {
                let r = all[p].ranges[s]
                for b in r.firstBlock..<(r.firstBlock + r.blockCount) {
                    var info = all[p].blockInfos[b]
                    info.firstRow = rows
                    info.subject = subject
                    rows += info.rows
                    infos.append(info)
                    partBlocks.append((Int32(p), Int32(b)))
                }
            }
            ranges.append(SubjectRange(firstBlock: firstBlock, blockCount: infos.count - firstBlock, firstRow: firstRow,
                                       rowCount: rows - firstRow))
        }
        return SegmentReader(path: path, subjects: subjects, ranges: ranges, blockInfos: infos, rows: rows,
                             parts: all, partBlocks: partBlocks)
    }

    /// Whether one subject's rows in block `ab` of `a` then block `bb` of `b`, the last and first of the subject's
    /// rows in two pieces that meet at one event time T, read in order one piece after the other: every row of
    /// `a` at T is known no later than every row of `b` at T (equal known times keep arrival order, and `a`
    /// arrived first), and no trade id at T is in both (a later version of a trade in the other piece). Decided
    /// from the two blocks alone: a run of T filling either block counts as out of order.
    static func meetInOrder(_ a: SegmentReader, _ ab: Int, _ b: SegmentReader, _ bb: Int, _ x: BlockBuffer, _ y: BlockBuffer) -> Bool {
        a.decode(block: ab, into: x)
        b.decode(block: bb, into: y)
        let t = x.eventTime[x.count - 1]
        var known = Int64.min, ids = Set<Int64>()
        var i = x.count - 1
        while i >= 0 && x.eventTime[i] == t {
            known = max(known, x.knownTime[i])
            let e = x.event(i)
            if e.kind == .trade && e.c != 0 { ids.insert(e.c) }
            i -= 1
        }
        guard i >= 0 else { return false }
        var j = 0
        while j < y.count && y.eventTime[j] == t {
            let e = y.event(j)
            if e.knownTime.rawValue < known || (e.kind == .trade && e.c != 0 && ids.contains(e.c)) { return false }
            j += 1
        }
        return j < y.count
    }

    private init(path: String, subjects: [String], ranges: [SubjectRange], blockInfos: [BlockInfo], rows: Int,
                 parts: [SegmentReader], partBlocks: [(part: Int32, block: Int32)]) {
        self.path = path
        self.subjects = subjects
        self.ranges = ranges
        self.blockInfos = blockInfos
        self.rows = rows
        self.parts = parts
        self.partBlocks = partBlocks
        columns = []
        columnOffsets = []
        exceptionRows = nil
        owners = []
    }

    /// The subject numbers whose text starts with `prefix` (the dictionary is in text order: a binary search).
    func candidates(_ prefix: String) -> Range<Int> {
        if prefix.isEmpty { return subjects.indices }
        var lo = 0, hi = subjects.count
        while lo < hi { let mid = (lo + hi) / 2; if subjects[mid] < prefix { lo = mid + 1 } else { hi = mid } }
        var end = lo
        while end < subjects.count && subjects[end].hasPrefix(prefix) { end += 1 }
        return lo..<end
    }

    /// The number of a subject, by binary search.
    func subjectIndex(_ text: String) -> Int? {
        let r = candidates(text)
        return r.first { subjects[$0] == text }
    }

    /// The first block of subject `s` that may hold event time ≥ from.
    func firstBlock(subject s: Int, from: Int64) -> Int {
        let r = ranges[s]
        var lo = r.firstBlock, hi = r.firstBlock + r.blockCount
        while lo < hi {
            let mid = (lo + hi) / 2
            if blockInfos[mid].maxEventTime < from { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Every row, in segment order, as events whose `subjectID` indexes `subjects` (for compaction).
    func allEvents(into events: inout [Event]) {
        let buffer = BlockBuffer()
        events.reserveCapacity(events.count + rows)
        for (b, info) in blockInfos.enumerated() {
            decode(block: b, into: buffer)
            for i in 0..<info.rows {
                var e = buffer.event(i)
                e.subjectID = UInt32(info.subject)
                events.append(e)
            }
        }
    }
}

@inline(__always)
func lowerBound(_ p: UnsafePointer<Int64>, _ n: Int, _ x: Int64) -> Int {
    var lo = 0, hi = n
    while lo < hi {
        let mid = (lo &+ hi) &>> 1
        if p[mid] < x { lo = mid &+ 1 } else { hi = mid }
    }
    return lo
}

extension UnsafeRawBufferPointer {
    @inline(__always)
    func le<T: FixedWidthInteger>(_ type: T.Type, _ offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
