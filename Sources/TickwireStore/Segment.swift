import TickwireCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The columns of a sealed segment, in decode order. A column may be encoded against an earlier one.
enum Column: Int, CaseIterable {
    case eventTime, knownTime, tag, a, b, c, d

    /// `allCases` without building an array on every use (it sits in per-block loops).
    static let all: [Column] = allCases
    static let count = 7

    var fileName: String {
        switch self {
        case .eventTime: "event_time"
        case .knownTime: "known_time"
        case .tag: "tag"
        case .a: "a"
        case .b: "b"
        case .c: "c"
        case .d: "d"
        }
    }

    var reference: Column? {
        switch self {
        case .knownTime: .eventTime
        case .c: .a
        case .d: .b
        default: nil
        }
    }

    /// The transforms worth trying: timestamps are near-regular, prices walk, sizes and tags repeat.
    var modes: [ColumnCodec.Mode] { Column.modeTable[rawValue] }

    private static let modeTable: [[ColumnCodec.Mode]] = [
        [.delta, .deltaOfDelta],            // event time
        [.reference, .delta],               // known time, against event time
        [.plain],                           // tag
        [.plain, .delta], [.plain, .delta], // a, b
        [.reference, .plain, .delta],       // c, against a
        [.reference, .plain, .delta],       // d, against b
    ]
}

/// `tag` packs kind, flags and source: kind | flags << 8 | source << 16.
@inline(__always) func packTag(_ e: Event) -> Int64 { Int64(e.kind.rawValue) | Int64(e.flags) << 8 | Int64(e.source) << 16 }

/// The files of one segment, built in memory. Sealing writes them to disk; a read of a partition that still has
/// an open log builds one and reads it in place.
struct SegmentImage {
    static let fileNames = ["subjects", "blocks", "valid_until"] + Column.all.map(\.fileName)
    static let blockRows = 1024
    static let magic: UInt32 = 0x4D53_5754 // "TWSM"
    static let version: UInt32 = 1

    var files: [String: [UInt8]] = [:]
    var rows = 0
    var generation: UInt64 = 0

    /// The `meta` file: sizes and CRC-32C of every other file, itself checked by a trailing CRC.
    func meta() -> [UInt8] {
        var out = [UInt8]()
        out.appendLE(SegmentImage.magic); out.appendLE(SegmentImage.version)
        out.appendLE(generation); out.appendLE(UInt64(rows))
        for name in SegmentImage.fileNames {
            let f = files[name]!
            out.appendLE(UInt64(f.count)); out.appendLE(CRC32C.of(f)); out.appendLE(UInt32(0))
        }
        out.appendLE(CRC32C.of(out))
        return out
    }

    /// Sorts rows by (subject, event time, known time, arrival), resolves versions and encodes every column.
    /// - Parameters:
    ///   - subjects: subject texts; `events[i].subjectID` indexes it.
    ///   - events: rows in arrival order.
    ///   - ends: valid-until times given by corrections, by index in `events` (docs/STORAGE.md, "Corrections").
    ///   - parallelRows: from this many rows on, the segment is built on two threads (the same bytes).
    static func build(subjects: [String], events: [Event], generation: UInt64, ends: [Int: Int64] = [:],
                      parallelRows: Int = SegmentImage.parallelRows) -> SegmentImage {
        events.withUnsafeBufferPointer {
            build(subjects: subjects, rows: $0, generation: generation, ends: ends, parallelRows: parallelRows)
        }
    }

    /// What the import's stager learnt of its rows as they arrived, so that sealing need not read every row
    /// again to sort them by subject: each row's subject (as `Event.subjectID`), and which rows are busts.
    struct Arrivals {
        var subjects: UnsafeBufferPointer<UInt32>
        var busts: [Int]
        /// Subjects (by `Event.subjectID`) whose rows, all of them, arrived already encoded, one part each
        /// (`EncodedPart.appendStreamed` in arrival order); they have no rows in `events`.
        var streamed: [Int: EncodedPart] = [:]
    }

    /// `build(subjects:events:…)` of rows held elsewhere than an array (the import's mapped partitions).
    /// - Parameter arrivals: the rows' subjects and busts, when the caller kept them (the same bytes either way).
    /// - warning: `events` and `arrivals` are read only during the call.
    static func build(subjects: [String], rows events: UnsafeBufferPointer<Event>, arrivals: Arrivals? = nil,
                      generation: UInt64, ends: [Int: Int64] = [:],
                      parallelRows: Int = SegmentImage.parallelRows) -> SegmentImage {
        // The dictionary in text order, so the subject number order is the text order replay merges on.
        let order = subjects.indices.sorted { subjects[$0] < subjects[$1] }
        var dictionary = [String](), rankOf = [Int](repeating: 0, count: subjects.count)
        for i in order {
            if dictionary.last != subjects[i] { dictionary.append(subjects[i]) }
            rankOf[i] = dictionary.count - 1
        }
        // Counting sort by subject keeps arrival order within a subject. The busts are found in the counting pass,
        // in arrival order: every subject's versions need them, and a pass in subject order reads rows scattered.
        // With the stager's arrivals, neither pass reads the rows themselves.
        var starts = [Int](repeating: 0, count: dictionary.count + 1)
        var bustRows = arrivals?.busts ?? []
        if let arrivals {
            for s in arrivals.subjects { starts[rankOf[Int(s)] + 1] += 1 }
        } else {
            for (i, e) in events.enumerated() {
                starts[rankOf[Int(e.subjectID)] + 1] += 1
                if e.kind == .bust { bustRows.append(i) }
            }
        }
        var streamedAt = [Int: EncodedPart]()
        for (s, part) in arrivals?.streamed ?? [:] {
            precondition(starts[rankOf[s] + 1] == 0 && streamedAt[rankOf[s]] == nil, "a streamed subject with rows or a twin")
            starts[rankOf[s] + 1] = part.rows
            streamedAt[rankOf[s]] = part
        }
        for s in 0..<dictionary.count { starts[s + 1] += starts[s] }
        // The rows are numbered in subject order over every subject; `perm` holds those that arrived as rows.
        let perm = UnsafeMutableBufferPointer<Int32>.allocate(capacity: starts[dictionary.count])
        defer { perm.deallocate() }
        func fill<Subjects: Sequence<UInt32>>(_ subjectOfRow: Subjects) {
            var next = starts
            for (i, s) in subjectOfRow.enumerated() {
                let r = rankOf[Int(s)]
                perm[next[r]] = Int32(i); next[r] += 1
            }
        }
        if let arrivals { fill(arrivals.subjects) } else { fill(events.lazy.map(\.subjectID)) }
        var busts = Versions.Busts(dictionary: dictionary)
        for i in bustRows { busts.add(events[i], subject: rankOf[Int(events[i].subjectID)], until: ends[i] ?? .max) }
        return encode(dictionary: dictionary, events: events, perm: perm, starts: starts, busts: busts, ends: ends,
                      streamed: streamedAt, parallelRows: parallelRows, generation: generation)
    }

    /// Rows past which a segment is built on two threads, each taking a run of subjects.
    static let parallelRows = 1 << 13

    private static func encode(dictionary: [String], events: UnsafeBufferPointer<Event>, perm: UnsafeMutableBufferPointer<Int32>,
                               starts: [Int], busts: Versions.Busts, ends: [Int: Int64], streamed: [Int: EncodedPart],
                               parallelRows: Int, generation: UInt64) -> SegmentImage {
        let rows = starts[dictionary.count]
        var parts = [EncodedPart]()
        if streamed.isEmpty {
            // Subjects are independent once the busts are known: split them where half the rows are, and sort,
            // resolve and encode the halves side by side, each subject's rows read while they are still in cache.
            // The parts are then joined in subject order, exactly as one pass would have written them.
            var cut = dictionary.count
            if rows >= parallelRows {
                cut = starts.firstIndex { $0 >= rows / 2 } ?? dictionary.count
                cut = min(max(cut, 1), dictionary.count)
            }
            let ranges = cut < dictionary.count ? [0..<cut, cut..<dictionary.count] : [0..<dictionary.count]
            parts = EncodedPart.inParallel(ranges) { range in
                EncodedPart(subjects: range, events: events, perm: perm, starts: starts, busts: busts, ends: ends)
            }
        } else {
            // Streamed subjects are encoded already: placed at their rank and row; the runs of subjects between
            // them are encoded from their rows.
            var s = 0
            while s < dictionary.count {
                if var part = streamed[s] {
                    part.place(subject: s, firstRow: starts[s])
                    parts.append(part)
                    s += 1
                    continue
                }
                var end = s + 1
                while end < dictionary.count && streamed[end] == nil { end += 1 }
                parts.append(EncodedPart(subjects: s..<end, events: events, perm: perm, starts: starts, busts: busts, ends: ends))
                s = end
            }
        }
        return join(dictionary: dictionary, parts: parts, starts: starts, generation: generation)
    }

    /// The segment of `parts`, encoded already and in subject order (every subject of `dictionary` in exactly
    /// one), `starts` the row where each subject begins.
    private static func join(dictionary: [String], parts: [EncodedPart], starts: [Int], generation: UInt64) -> SegmentImage {
        let rows = starts[dictionary.count]
        var subjectsFile = [UInt8]()
        for s in dictionary { subjectsFile.appendLE(UInt16(s.utf8.count)); subjectsFile.append(contentsOf: s.utf8) }
        var subjectIndex = [UInt8](), blockIndex = [UInt8](), vu = [UInt8]()
        var blockCount = 0, exceptions = 0
        vu.appendLE(UInt64(parts.reduce(0) { $0 + $1.validUntil.count }))
        for part in parts {
            for (k, s) in part.subjects.enumerated() {
                let blocks = part.blocksPerSubject[k]
                subjectIndex.appendLE(UInt32(blockCount)); subjectIndex.appendLE(UInt32(blocks))
                subjectIndex.appendLE(UInt64(starts[s])); subjectIndex.appendLE(UInt64(starts[s + 1] - starts[s]))
                blockCount += blocks
            }
            for b in part.blocks {
                blockIndex.appendLE(UInt64(b.firstRow)); blockIndex.appendLE(UInt32(b.rows)); blockIndex.appendLE(UInt32(b.subject))
                blockIndex.appendLE(b.minEventTime); blockIndex.appendLE(b.maxEventTime); blockIndex.appendLE(b.maxKnownTime)
                blockIndex.appendLE(UInt32(exceptions + b.firstException)); blockIndex.appendLE(UInt32(b.exceptions))
            }
            for x in part.validUntil { vu.appendLE(UInt64(x.row)); vu.appendLE(x.until) }
            exceptions += part.validUntil.count
        }
        var image = SegmentImage()
        image.rows = rows
        image.generation = generation
        image.files["subjects"] = subjectsFile
        var blocks = [UInt8]()
        blocks.appendLE(SegmentImage.magic); blocks.appendLE(SegmentImage.version)
        blocks.appendLE(UInt64(rows)); blocks.appendLE(UInt32(blockCount)); blocks.appendLE(UInt32(dictionary.count))
        blocks.append(contentsOf: subjectIndex)
        blocks.append(contentsOf: blockIndex)
        image.files["blocks"] = blocks
        image.files["valid_until"] = vu
        for col in Column.all {
            var file = [UInt8]()
            let header = 8 + 8 * (blockCount + 1)
            file.reserveCapacity(header + parts.reduce(0) { $0 + $1.columns[col.rawValue].count })
            file.appendLE(UInt64(blockCount))
            var base = 0
            for part in parts {
                for o in part.offsets[col.rawValue] { file.appendLE(UInt64(header + base) + o) }
                base += part.columns[col.rawValue].count
            }
            file.appendLE(UInt64(header + base))
            for part in parts { file.append(contentsOf: part.columns[col.rawValue]) }
            image.files[col.fileName] = file
        }
        return image
    }
}

/// A run of subjects sorted, resolved and encoded: their column bytes (offsets relative to the part), block
/// index entries and valid-until exceptions (numbered from the part's first), to be joined with the other parts
/// in subject order.
struct EncodedPart {
    struct Block {
        var firstRow: Int, rows: Int, subject: Int
        var minEventTime: Int64, maxEventTime: Int64, maxKnownTime: Int64
        var firstException: Int, exceptions: Int
    }
    private(set) var subjects: Range<Int>
    var columns = [[UInt8]](repeating: [], count: Column.count)
    var offsets = [[UInt64]](repeating: [], count: Column.count)
    var blocks = [Block]()
    var blocksPerSubject = [Int]()
    var validUntil = [(row: Int, until: Int64)]()
    /// Rows in the part.
    private(set) var rows = 0

    /// - Parameter perm: every row's index in `events`, by subject; this part sorts its subjects' ranges by time.
    init(subjects: Range<Int>, events: UnsafeBufferPointer<Event>, perm: UnsafeMutableBufferPointer<Int32>, starts: [Int],
         busts: Versions.Busts, ends: [Int: Int64]) {
        self.subjects = subjects
        let n = SegmentImage.blockRows
        let values = UnsafeMutablePointer<Int64>.allocate(capacity: n * Column.count)
        let scratch = UnsafeMutablePointer<Int64>.allocate(capacity: n)
        defer { values.deallocate(); scratch.deallocate() }
        var exception = 0
        for s in subjects {
            // Each subject's rows by time, only if arrival order (nearly always time order) was not.
            let range = starts[s]..<starts[s + 1]
            func less(_ x: Int32, _ y: Int32) -> Bool {
                let a = events[Int(x)], b = events[Int(y)]
                if a.eventTime != b.eventTime { return a.eventTime < b.eventTime }
                if a.knownTime != b.knownTime { return a.knownTime < b.knownTime }
                return x < y
            }
            var sorted = true
            for i in range.dropFirst() where less(perm[i], perm[i - 1]) { sorted = false; break }
            if !sorted { perm[range].sort(by: less) }
            Versions.resolve(subject: s, rows: range, events: events, perm: UnsafeBufferPointer(perm), busts: busts,
                             ends: ends, into: &validUntil)
            var blocks = 0
            var row = range.lowerBound
            while row < range.upperBound {
                let count = min(n, range.upperBound - row)
                let firstException = exception
                while exception < validUntil.count && validUntil[exception].row < row + count { exception += 1 }
                appendBlock(subject: s, firstRow: row, count: count, values: values, scratch: scratch,
                            exceptions: firstException..<exception) { events[Int(perm[row + $0])] }
                blocks += 1
                row += count
            }
            blocksPerSubject.append(blocks)
        }
    }

    /// An empty part of one subject, whose rows arrive already in order and without versions (no two trades of
    /// the same id at the same time, no bust): its blocks are appended one at a time as they fill
    /// (`appendBlock`), and `place` gives it its subject number and first row once every subject is known.
    init(streaming: ()) {
        subjects = 0..<1
        blocksPerSubject = [0]
    }

    /// Encodes rows `row(0..<count)` (at most `blockRows`, in order) as the next block of subject `s`, the segment's
    /// rows `firstRow..<firstRow + count`; `exceptions` are the block's in `validUntil`.
    /// - Parameter values: room for `blockRows` values of every column; `scratch` for `blockRows`.
    @inline(__always)
    mutating func appendBlock(subject s: Int, firstRow: Int, count: Int, values: UnsafeMutablePointer<Int64>,
                              scratch: UnsafeMutablePointer<Int64>, exceptions: Range<Int>, row: (Int) -> Event) {
        let n = SegmentImage.blockRows
        var minT = Int64.max, maxT = Int64.min, maxK = Int64.min
        for i in 0..<count {
            let e = row(i)
            values[i] = e.eventTime.rawValue
            values[n + i] = e.knownTime.rawValue
            values[2 * n + i] = packTag(e)
            values[3 * n + i] = e.a; values[4 * n + i] = e.b; values[5 * n + i] = e.c; values[6 * n + i] = e.d
            minT = min(minT, e.eventTime.rawValue); maxT = max(maxT, e.eventTime.rawValue)
            maxK = max(maxK, e.knownTime.rawValue)
        }
        for col in Column.all {
            offsets[col.rawValue].append(UInt64(columns[col.rawValue].count))
            ColumnCodec.encode(values + col.rawValue * n, count: count,
                               reference: col.reference.map { UnsafePointer(values + $0.rawValue * n) },
                               modes: col.modes, scratch: scratch, into: &columns[col.rawValue])
        }
        blocks.append(Block(firstRow: firstRow, rows: count, subject: s, minEventTime: minT, maxEventTime: maxT,
                            maxKnownTime: maxK, firstException: exceptions.lowerBound, exceptions: exceptions.count))
        rows += count
    }

    /// A streamed part's next block (`init(streaming:)`): rows numbered from the part's first.
    mutating func appendStreamed(_ rows: UnsafeBufferPointer<Event>, values: UnsafeMutablePointer<Int64>,
                                 scratch: UnsafeMutablePointer<Int64>) {
        appendBlock(subject: 0, firstRow: self.rows, count: rows.count, values: values, scratch: scratch,
                    exceptions: 0..<0) { rows[$0] }
        blocksPerSubject[0] += 1
    }

    /// Makes a streamed part subject `s`, its rows beginning at the segment's row `firstRow`.
    mutating func place(subject s: Int, firstRow: Int) {
        subjects = s..<(s + 1)
        for k in blocks.indices { blocks[k].subject = s; blocks[k].firstRow += firstRow }
    }

    /// A streamed part's rows, decoded back, in order (as `SegmentReader` decodes them: seq 0), each with subject
    /// id `subject`.
    func decodedRows(subject: SubjectID) -> [Event] {
        var out = [Event]()
        out.reserveCapacity(rows)
        let buffer = BlockBuffer()
        for (k, block) in blocks.enumerated() {
            for col in Column.all {
                columns[col.rawValue].withUnsafeBytes { p in
                    _ = ColumnCodec.decode(p.baseAddress! + Int(offsets[col.rawValue][k]), into: buffer.column(col),
                                           reference: col.reference.map { UnsafePointer(buffer.column($0)) })
                }
            }
            for i in 0..<block.rows {
                var e = buffer.event(i)
                e.subjectID = subject
                out.append(e)
            }
        }
        return out
    }

    /// `make` of each range, the first on the calling thread and the others on threads of their own.
    static func inParallel(_ ranges: [Range<Int>], _ make: @escaping (Range<Int>) -> EncodedPart) -> [EncodedPart] {
        guard ranges.count > 1 else { return ranges.map(make) }
        let others = ranges.dropFirst().map { range in BackgroundValue { make(range) } }
        let first = make(ranges[0])
        return [first] + others.map(\.value)
    }
}

/// Version resolution (docs/STORAGE.md, "Versions"): which row stops being true, and when.
///
/// A TRADE with a non-zero trade id is identified by (subject, event time, trade id): a later-known row with the
/// same key is a correction and supersedes it from its known time on. A BUST voids every version of the trade
/// with its id on the subject of the same stem (`MD.XNAS.AAPL.BUST` voids trades of `MD.XNAS.AAPL.TRADE`)
/// from the bust's known time on. Every other event is its own version: quotes, statuses and alerts are
/// observations, never corrected, so two quotes at the same instant are both kept.
///
/// The busts are gathered first (any subject's may void another's trades); then each subject resolves alone,
/// so subjects can be resolved on different threads.
enum Versions {
    /// The segment's busts: (stem, trade id) -> when each bust of that trade came to be known, and when it was
    /// withdrawn by a correction (a withdrawn bust voids only rows known before that).
    struct Busts {
        struct Key: Hashable { let stem: Int; let id: Int64 }
        /// Subject number -> its stem's number.
        let stemOf: [Int]
        var voids = [Key: [(from: Int64, until: Int64)]]()

        init(dictionary: [String]) {
            var stemOf = [Int](repeating: 0, count: dictionary.count)
            var stems = [Substring: Int]()
            for (s, text) in dictionary.enumerated() {
                let stem = Layout.stem(text)
                if let k = stems[stem] { stemOf[s] = k } else { stemOf[s] = stems.count; stems[stem] = stems.count }
            }
            self.stemOf = stemOf
        }

        /// Adds a bust of subject `s`, withdrawn at `until` (`.max`: never).
        mutating func add(_ bust: Event, subject s: Int, until: Int64) {
            voids[Key(stem: stemOf[s], id: bust.c), default: []].append((bust.knownTime.rawValue, until))
        }
    }

    /// Appends the exceptions of subject `s`, whose rows (sorted) are `perm[rows]`, in row order.
    /// - Parameters:
    ///   - ends: valid-until times given by corrections, by index in `events`.
    static func resolve(subject s: Int, rows: Range<Int>, events: UnsafeBufferPointer<Event>, perm: UnsafeBufferPointer<Int32>,
                        busts: Busts, ends: [Int: Int64], into out: inout [(row: Int, until: Int64)]) {
        var row = rows.lowerBound
        while row < rows.upperBound {
            // One run of equal event time: a later version of the same trade id supersedes an earlier one.
            let t = events[Int(perm[row])].eventTime
            var end = row + 1
            while end < rows.upperBound && events[Int(perm[end])].eventTime == t { end += 1 }
            // Walk the run backwards, remembering the next version of each trade id (a map only for long runs).
            var later = [Int64: Int64]()
            let runStart = out.count
            for i in (row..<end).reversed() {
                let e = events[Int(perm[i])]
                guard e.kind == .trade, e.c != 0 else {
                    if !ends.isEmpty, let end = ends[Int(perm[i])] { out.append((i, end)) }
                    continue
                }
                var until = Int64.max
                if end - row <= 32 {
                    for j in (i + 1)..<end {
                        let f = events[Int(perm[j])]
                        if f.kind == .trade && f.c == e.c { until = f.knownTime.rawValue; break }
                    }
                } else {
                    until = later[e.c] ?? .max
                    later[e.c] = e.knownTime.rawValue
                }
                if !busts.voids.isEmpty, let bs = busts.voids[Busts.Key(stem: busts.stemOf[s], id: e.c)] {
                    for b in bs where b.until > e.knownTime.rawValue { until = min(until, b.from) }
                }
                if !ends.isEmpty, let end = ends[Int(perm[i])] { until = min(until, end) }
                if until != .max { out.append((i, until)) }
            }
            if out.count - runStart > 1 { out[runStart...].reverse() }
            row = end
        }
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}
