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
    ///   - parallelRows: from this many rows on, the columns are encoded on two threads (the same bytes).
    static func build(subjects: [String], events: [Event], generation: UInt64, ends: [Int: Int64] = [:],
                      parallelRows: Int = SegmentImage.parallelRows) -> SegmentImage {
        events.withUnsafeBufferPointer {
            build(subjects: subjects, rows: $0, generation: generation, ends: ends, parallelRows: parallelRows)
        }
    }

    /// `build(subjects:events:…)` of rows held elsewhere than an array (the import's mapped partitions).
    /// - warning: `events` is read only during the call.
    static func build(subjects: [String], rows events: UnsafeBufferPointer<Event>, generation: UInt64,
                      ends: [Int: Int64] = [:], parallelRows: Int = SegmentImage.parallelRows) -> SegmentImage {
        // The dictionary in text order, so the subject number order is the text order replay merges on.
        let order = subjects.indices.sorted { subjects[$0] < subjects[$1] }
        var dictionary = [String](), rankOf = [Int](repeating: 0, count: subjects.count)
        for i in order {
            if dictionary.last != subjects[i] { dictionary.append(subjects[i]) }
            rankOf[i] = dictionary.count - 1
        }
        // Counting sort by subject keeps arrival order within a subject; then each subject's rows are sorted by
        // time only if they are not already (arrival order is nearly always time order).
        var starts = [Int](repeating: 0, count: dictionary.count + 1)
        for e in events { starts[rankOf[Int(e.subjectID)] + 1] += 1 }
        for s in 0..<dictionary.count { starts[s + 1] += starts[s] }
        var fill = starts
        var perm = [Int32](repeating: 0, count: events.count)
        for (i, e) in events.enumerated() {
            let s = rankOf[Int(e.subjectID)]
            perm[fill[s]] = Int32(i); fill[s] += 1
        }
        perm.withUnsafeMutableBufferPointer { p in
            for s in 0..<dictionary.count {
                let range = starts[s]..<starts[s + 1]
                func less(_ x: Int32, _ y: Int32) -> Bool {
                    let a = events[Int(x)], b = events[Int(y)]
                    if a.eventTime != b.eventTime { return a.eventTime < b.eventTime }
                    if a.knownTime != b.knownTime { return a.knownTime < b.knownTime }
                    return x < y
                }
                var sorted = true
                for i in range.dropFirst() where less(p[i], p[i - 1]) { sorted = false; break }
                if !sorted { p[range].sort(by: less) }
            }
        }
        let validUntil = Versions.resolve(events: events, perm: perm, starts: starts, dictionary: dictionary, ends: ends)
        return encode(dictionary: dictionary, events: events, perm: perm, starts: starts, validUntil: validUntil,
                      parallelRows: parallelRows,
                      generation: generation)
    }

    /// Rows past which the columns are encoded on two threads, each taking a run of subjects.
    static let parallelRows = 1 << 13

    private static func encode(dictionary: [String], events: UnsafeBufferPointer<Event>, perm: [Int32], starts: [Int],
                               validUntil: [(row: Int, until: Int64)], parallelRows: Int, generation: UInt64) -> SegmentImage {
        var subjectsFile = [UInt8]()
        for s in dictionary { subjectsFile.appendLE(UInt16(s.utf8.count)); subjectsFile.append(contentsOf: s.utf8) }
        // Subjects are independent: split them where half the rows are and encode the halves side by side; the
        // parts are then joined in subject order, exactly as one pass would have written them.
        var cut = dictionary.count
        if events.count >= parallelRows {
            cut = starts.firstIndex { $0 >= events.count / 2 } ?? dictionary.count
            cut = min(max(cut, 1), dictionary.count)
        }
        let ranges = cut < dictionary.count ? [0..<cut, cut..<dictionary.count] : [0..<dictionary.count]
        let parts = EncodedPart.inParallel(ranges) { range in
            EncodedPart(subjects: range, events: events, perm: perm, starts: starts, validUntil: validUntil)
        }
        var subjectIndex = [UInt8](), blockIndex = [UInt8]()
        var blockCount = 0
        for part in parts {
            for (k, s) in part.subjects.enumerated() {
                let blocks = part.blocksPerSubject[k]
                subjectIndex.appendLE(UInt32(blockCount)); subjectIndex.appendLE(UInt32(blocks))
                subjectIndex.appendLE(UInt64(starts[s])); subjectIndex.appendLE(UInt64(starts[s + 1] - starts[s]))
                blockCount += blocks
            }
            blockIndex.append(contentsOf: part.blockIndex)
        }
        var image = SegmentImage()
        image.rows = events.count
        image.generation = generation
        image.files["subjects"] = subjectsFile
        var blocks = [UInt8]()
        blocks.appendLE(SegmentImage.magic); blocks.appendLE(SegmentImage.version)
        blocks.appendLE(UInt64(events.count)); blocks.appendLE(UInt32(blockCount)); blocks.appendLE(UInt32(dictionary.count))
        blocks.append(contentsOf: subjectIndex)
        blocks.append(contentsOf: blockIndex)
        image.files["blocks"] = blocks
        var vu = [UInt8]()
        vu.appendLE(UInt64(validUntil.count))
        for x in validUntil { vu.appendLE(UInt64(x.row)); vu.appendLE(x.until) }
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

/// The encoded blocks of a run of subjects: their column bytes (offsets relative to the part), block index
/// entries and block counts, to be joined with the other parts in subject order.
private struct EncodedPart {
    let subjects: Range<Int>
    var columns = [[UInt8]](repeating: [], count: Column.count)
    var offsets = [[UInt64]](repeating: [], count: Column.count)
    var blockIndex = [UInt8]()
    var blocksPerSubject = [Int]()

    init(subjects: Range<Int>, events: UnsafeBufferPointer<Event>, perm: [Int32], starts: [Int], validUntil: [(row: Int, until: Int64)]) {
        self.subjects = subjects
        let n = SegmentImage.blockRows
        let values = UnsafeMutablePointer<Int64>.allocate(capacity: n * Column.count)
        let scratch = UnsafeMutablePointer<Int64>.allocate(capacity: n)
        defer { values.deallocate(); scratch.deallocate() }
        // The valid-until entries are in row order: the first one at or after this part's first row.
        let firstRow = subjects.isEmpty ? 0 : starts[subjects.lowerBound]
        var lo = 0, hi = validUntil.count
        while lo < hi { let mid = (lo + hi) / 2; if validUntil[mid].row < firstRow { lo = mid + 1 } else { hi = mid } }
        var exception = lo
        for s in subjects {
            var blocks = 0
            var row = starts[s]
            while row < starts[s + 1] {
                let count = min(n, starts[s + 1] - row)
                var minT = Int64.max, maxT = Int64.min, maxK = Int64.min
                for i in 0..<count {
                    let e = events[Int(perm[row + i])]
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
                let firstException = exception
                while exception < validUntil.count && validUntil[exception].row < row + count { exception += 1 }
                blockIndex.appendLE(UInt64(row)); blockIndex.appendLE(UInt32(count)); blockIndex.appendLE(UInt32(s))
                blockIndex.appendLE(minT); blockIndex.appendLE(maxT); blockIndex.appendLE(maxK)
                blockIndex.appendLE(UInt32(firstException)); blockIndex.appendLE(UInt32(exception - firstException))
                blocks += 1
                row += count
            }
            blocksPerSubject.append(blocks)
        }
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
enum Versions {
    static func resolve(events: UnsafeBufferPointer<Event>, perm: [Int32], starts: [Int], dictionary: [String],
                        ends: [Int: Int64] = [:]) -> [(row: Int, until: Int64)] {
        // Busts first: (stem, trade id) -> earliest known time of a bust.
        var stemOf = [Int](repeating: 0, count: dictionary.count)
        var stems = [Substring: Int]()
        for (s, text) in dictionary.enumerated() {
            let stem = Layout.stem(text)
            if let k = stems[stem] { stemOf[s] = k } else { stemOf[s] = stems.count; stems[stem] = stems.count }
        }
        struct Key: Hashable { let stem: Int; let id: Int64 }
        // A bust withdrawn by a correction voids only the rows known before it was withdrawn.
        var busts = [Key: [(from: Int64, until: Int64)]]()
        for s in 0..<dictionary.count {
            for row in starts[s]..<starts[s + 1] {
                let e = events[Int(perm[row])]
                guard e.kind == .bust else { continue }
                busts[Key(stem: stemOf[s], id: e.c), default: []].append((e.knownTime.rawValue, ends[Int(perm[row])] ?? .max))
            }
        }
        var out = [(row: Int, until: Int64)]()
        for s in 0..<dictionary.count {
            var row = starts[s]
            while row < starts[s + 1] {
                // One run of equal event time: a later version of the same trade id supersedes an earlier one.
                let t = events[Int(perm[row])].eventTime
                var end = row + 1
                while end < starts[s + 1] && events[Int(perm[end])].eventTime == t { end += 1 }
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
                    if !busts.isEmpty, let bs = busts[Key(stem: stemOf[s], id: e.c)] {
                        for b in bs where b.until > e.knownTime.rawValue { until = min(until, b.from) }
                    }
                    if !ends.isEmpty, let end = ends[Int(perm[i])] { until = min(until, end) }
                    if until != .max { out.append((i, until)) }
                }
                out[runStart...].reverse()
                row = end
            }
        }
        return out
    }
}

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ v: T) {
        Swift.withUnsafeBytes(of: v.littleEndian) { append(contentsOf: $0) }
    }
}
