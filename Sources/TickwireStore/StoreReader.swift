import TickwireCore

/// Which time a read's window and order follow.
public enum TimeAxis: String, Sendable, CaseIterable {
    /// When it happened (the venue's time): history as it is now known, corrections applied. The default.
    case event
    /// When it was known (arrived): every version as it arrived — a correction or a bust is an event of its own —
    /// in arrival order: what a live system could have seen, in the order it saw it.
    case known
}

/// What to read: events with event time in [from, to) whose subject matches a pattern, as known at `asOf`
/// (as known now when nil). With `time` `.known`, events with known time in [from, to) (and ≤ `asOf`), every
/// version, in known-time order.
public struct StoreQuery: Sendable, Equatable {
    public var subjects: SubjectPattern
    public var from: Nanos
    public var to: Nanos
    public var asOf: Nanos?
    public var time: TimeAxis = .event

    /// - Throws: `StoreError.badQuery` when `from` is after `to`.
    public init(subjects: SubjectPattern, from: Nanos, to: Nanos, asOf: Nanos? = nil) throws(StoreError) {
        guard from <= to else {
            throw .badQuery(field: "--from/--to", reason: "from \(from.iso8601) is after to \(to.iso8601)")
        }
        self.subjects = subjects; self.from = from; self.to = to; self.asOf = asOf
    }

    /// Parses the command-line form: a pattern, and times as ISO-8601 UTC or integer nanoseconds.
    /// - Throws: `StoreError.badQuery` naming the argument and what is wrong with it.
    public init(subjects: String, from: String, to: String, asOf: String? = nil) throws(StoreError) {
        let pattern: SubjectPattern
        do { pattern = try SubjectPattern(subjects) } catch { throw .badQuery(field: "--subjects", reason: error.description) }
        try self.init(subjects: pattern, from: try StoreQuery.time(from, "--from"), to: try StoreQuery.time(to, "--to"),
                      asOf: try asOf.map { (s: String) throws(StoreError) -> Nanos in try StoreQuery.time(s, "--as-of") })
    }

    static func time(_ text: String, _ field: String) throws(StoreError) -> Nanos {
        do { return try Nanos(parsing: text) } catch { throw .badQuery(field: field, reason: error.description) }
    }

    /// Parses a duration: integer nanoseconds, or a number with a unit `ns`, `us`, `ms`, `s`, `m`, `h` (`250ms`).
    public static func duration(_ text: String, field: String = "--tolerance") throws(StoreError) -> Int64 {
        let units: [(String, Int64)] = [("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
                                        ("m", 60_000_000_000), ("h", 3_600_000_000_000)]
        // Longest suffix first: "ms" is not "s" after an "m".
        for (suffix, scale) in units.sorted(by: { $0.0.count > $1.0.count }) where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            if let n = Int64(number), n >= 0, n <= Int64.max / scale { return n * scale }
            // A decimal (1.5s, 0.25ms), exact to the nanosecond: the fraction may not be finer than that.
            let parts = number.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 2, let whole = Int64(parts[0].isEmpty ? "0" : parts[0]), whole >= 0, !parts[1].isEmpty,
               parts[1].allSatisfy({ $0.isASCII && $0.isNumber }), whole <= Int64.max / scale - 1 {
                var fraction: Int64 = 0, unit = scale
                for c in parts[1] {
                    guard unit >= 10, unit % 10 == 0 else {
                        throw .badQuery(field: field, reason: "'\(text)' is finer than a nanosecond")
                    }
                    unit /= 10
                    fraction += Int64(c.wholeNumberValue!) * unit
                }
                return whole * scale + fraction
            }
        }
        if let n = Int64(text), n >= 0 { return n }
        throw .badQuery(field: field, reason: "'\(text)' is not a duration such as 500ms, 2s or 1000000 (nanoseconds)")
    }

    var knownLimit: Int64 { asOf?.rawValue ?? .max }

    /// Parses `--time`. - Throws: `StoreError.badQuery` naming `--time`.
    public static func timeAxis(_ text: String) throws(StoreError) -> TimeAxis {
        guard let axis = TimeAxis(rawValue: text) else {
            throw .badQuery(field: "--time", reason: "'\(text)' is not event or known")
        }
        return axis
    }

    /// A note for a query that matched nothing, saying the likely reason: an empty range, a pattern in the wrong
    /// case (subjects are upper case), or no data in the range. Nothing matching is an answer, not an error.
    public func whyNothing(pattern text: String) -> String {
        if from == to { return "no events: the range \(from.iso8601) to \(to.iso8601) is empty (--to is exclusive)" }
        let axis = time == .known ? "known times" : "event times"
        if text != text.uppercased() && text.uppercased() != text.lowercased() {
            return "no events match '\(text)': subjects are case-sensitive and upper case; did you mean '\(text.uppercased())'?"
        }
        return "no events match '\(text)' with \(axis) from \(from.iso8601) to \(to.iso8601)"
            + (asOf.map { " as known at \($0.iso8601)" } ?? "")
    }

    /// The trading days whose partitions can hold event times in [from, to).
    var days: ClosedRange<Int64>? {
        guard from < to else { return nil }
        return Layout.day(of: from.rawValue)...Layout.day(of: to.rawValue - 1)
    }
}

/// One event read back: its subject text and the event (`subjectID` 0 and `seq` 0 — the store keeps subjects as
/// text, and a replay numbers what it sends).
public struct StoredEvent: Sendable, Equatable {
    public var subject: String
    public var event: Event
    public init(subject: String, event: Event) { self.subject = subject; self.event = event }
}

/// A block of rows of one subject handed to a `scan` callback; the pointers are valid only during the call.
public struct EventBatch {
    public let subject: String
    public let rows: BlockBuffer
    public var count: Int { rows.count }
}

/// Reads a store directory: scans, replays and as-of joins, each as known at a chosen moment.
///
/// Sealed partitions are memory-mapped; a partition still being written is read from its log's intact blocks.
/// A reader sees the store as it was when each partition was first opened by it; open a new reader to see
/// later writes. Not thread-safe: use one reader per thread.
///
/// Damage inside a log (bytes that are no valid block, with intact blocks after them) does not stop a read: the
/// intact blocks before and after it are read, and the damage is listed in `damage`. A command must not call
/// such a read a success: `checkIntact()` throws once the read is done.
public final class StoreReader {
    public let directory: String
    /// Partitions opened, by key and the pattern of the subjects read (a partition with several pieces is composed
    /// for the subjects a read wants: `Sealing.openForReading`).
    private var cache: [CacheKey: SegmentReader?] = [:]
    private struct CacheKey: Hashable { let key: PartitionKey; let pattern: String }
    /// The sealed segments and chunks under those, each mapped and checked once.
    private let opened = SegmentReader.Opened()
    /// Damage found in the logs of the partitions read so far, in the order they were opened.
    public private(set) var damage: [StoreDamage] = []

    /// - Throws: `StoreError.io` when the directory does not exist.
    public init(directory: String) throws(StoreError) {
        guard FS.isDirectory(directory) else { throw .io(operation: "open store", path: directory, errno: ENOENT) }
        self.directory = directory
    }

    /// The partitions on disk when the reader first looked, in (date, root) order.
    public private(set) lazy var partitions: [PartitionKey] = Layout.partitions(in: directory)

    /// The segments holding a subject, on the days in a range, in day order.
    /// - Parameter pattern: the subjects the whole read will want from these partitions (a join's quote
    ///   pattern), so that each partition is composed once for all of them; the subject itself when nil.
    func segments(holding subject: String, days: ClosedRange<Int64>, pattern: SubjectPattern? = nil) throws(StoreError) -> [(SegmentReader, Int)] {
        let root = Layout.root(ofSubject: subject)
        let wanted: SubjectPattern
        if let pattern { wanted = pattern } else {
            do { wanted = try SubjectPattern(subject) } catch { throw .badQuery(field: "subject", reason: error.description) }
        }
        var out = [(SegmentReader, Int)]()
        for key in partitions where key.root == root && days.contains(key.day) {
            if let seg = try segment(key, wanted), let s = seg.subjectNumbers[subject] { out.append((seg, s)) }
        }
        return out
    }

    func segment(_ key: PartitionKey, _ pattern: SubjectPattern) throws(StoreError) -> SegmentReader? {
        let k = CacheKey(key: key, pattern: pattern.text)
        if let s = cache[k] { return s }
        let (s, found) = try Corrections.openForReading(directory + "/" + key.relativePath, prefix: pattern.literalPrefix,
                                                    include: { pattern.matches(subjectText: $0) }, opened: opened)
        cache[k] = s
        // The same damage is met again when the partition is opened for another pattern.
        for d in found where !damage.contains(where: { $0.path == d.path && $0.offset == d.offset }) { damage.append(d) }
        return s
    }

    /// Throws when a read skipped damage: call it after a scan, replay, join or export, so that reading around
    /// damage ends in an error (the CLI exits non-zero) after every intact event was delivered.
    /// - Throws: `StoreError.corrupt` naming the first damaged log and the byte offset of the damage.
    public func checkIntact() throws(StoreError) {
        guard let first = damage.first else { return }
        let more = damage.count > 1 ? "; \(damage.count - 1) more damaged regions" : ""
        throw .corrupt(path: first.path, offset: first.offset,
                       reason: "\(first.reason): \(first.bytes) bytes skipped, the intact blocks before and after them were read\(more)")
    }

    /// The segments and subject numbers a query touches, partition by partition in (date, root) order.
    func matching(_ q: StoreQuery, days: ClosedRange<Int64>? = nil) throws(StoreError) -> [(PartitionKey, SegmentReader, [Int])] {
        guard let range = days ?? q.days else { return [] }
        var out = [(PartitionKey, SegmentReader, [Int])]()
        for key in partitions where range.contains(key.day) && q.subjects.couldMatch(root: key.root) {
            guard let seg = try segment(key, q.subjects) else { continue }
            let subjects = seg.subjects.indices.filter { q.subjects.matches(subjectText: seg.subjects[$0]) }
            if !subjects.isEmpty { out.append((key, seg, subjects)) }
        }
        return out
    }

    /// Calls `body` with every block of matching rows, subject by subject within each partition, each block in
    /// (event time, known time) order. The fastest way through the store: no per-event call, no copy, and only
    /// the `columns` asked for decoded.
    /// - Throws: `StoreError` from opening a partition, or what `body` throws.
    public func scan(_ q: StoreQuery, columns: StoreColumns = .all, _ body: (EventBatch) throws -> Void) throws {
        let buffer = BlockBuffer()
        let limit = q.knownLimit
        for (_, seg, subjects) in try matching(q) {
            for s in subjects {
                let r = seg.ranges[s]
                for b in seg.firstBlock(subject: s, from: q.from.rawValue)..<(r.firstBlock + r.blockCount) {
                    if seg.blockInfos[b].minEventTime >= q.to.rawValue { break }
                    if seg.read(block: b, from: q.from.rawValue, to: q.to.rawValue, asOf: limit, into: buffer, columns: columns) > 0 {
                        try body(EventBatch(subject: seg.subjects[s], rows: buffer))
                    }
                }
            }
        }
    }

    /// Calls `body` with every matching event in replay order: event time, then subject text, then known time
    /// (then arrival). The same store and query give the same sequence every time, sealed or not. With
    /// `q.time` `.known`: known time, then event time, then subject text (`replayKnown`).
    public func replay(_ q: StoreQuery, _ body: (StoredEvent) throws -> Void) throws {
        if q.time == .known { return try replayKnown(q, body) }
        try forEachDay(q) { cursors, merge in
            try merge.run { rows, order in
                for i in order {
                    let r = rows[Int(i)]
                    try body(StoredEvent(subject: cursors[Int(r.rank)].text, event: r.event))
                }
            }
        }
    }

    /// Calls `body` once a day with a partition, in day order: the day's matching subjects' cursors in rank (text)
    /// order, and the merge that puts their rows in replay order (`ReplayMerge`).
    func forEachDay(_ q: StoreQuery, _ body: ([SubjectCursor], ReplayMerge) throws -> Void) throws {
        guard let days = q.days else { return }
        // Only the days that have partitions: a window of years must not walk every empty day.
        for day in Set(partitions.map(\.day).filter { days.contains($0) }).sorted() {
            var cursors = [SubjectCursor]()
            for (_, seg, subjects) in try matching(q, days: day...day) {
                for s in subjects { cursors.append(SubjectCursor(segment: seg, subject: s, query: q)) }
            }
            // Ranks by subject text across the day's partitions.
            cursors.sort { $0.text < $1.text }
            for (rank, c) in cursors.enumerated() { c.rank = rank }
            try body(cursors, ReplayMerge(cursors))
        }
    }

    /// How far before its known time an event's time may lie and still be found by a known-time read: the
    /// partitions of event dates up to this much before the window (and one day after it) are read.
    public static let knownTimeReach: Int64 = 7 * Nanos.perDay

    /// The event-time days a known-time window [from, to) can draw on.
    static func knownDays(_ from: Nanos, _ to: Nanos) -> ClosedRange<Int64>? {
        guard from < to else { return nil }
        let lo = from.rawValue < Int64.min + knownTimeReach ? Int64.min : from.rawValue - knownTimeReach
        return Layout.day(of: lo)...(Layout.day(of: to.rawValue - 1) + 1)
    }

    /// Every version of every matching row with known time in [from, to) and at most `asOf`, of one subject at a
    /// time: `body` gets the subject and the rows, in (known time, event time, arrival) order.
    func knownRows(_ q: StoreQuery, subjectFilter: (String) -> Bool = { _ in true },
                   _ body: (String, [Event]) throws -> Void) throws {
        guard let days = Self.knownDays(q.from, q.to) else { return }
        let lo = q.from.rawValue, hi = min(q.to.rawValue, q.asOf.map { $0.rawValue == .max ? .max : $0.rawValue + 1 } ?? .max)
        guard lo < hi else { return }
        var bySubject = [String: [Event]]()
        let buffer = BlockBuffer()
        for (_, seg, subjects) in try matching(q, days: days) {
            for s in subjects where subjectFilter(seg.subjects[s]) {
                let r = seg.ranges[s]
                var rows = bySubject[seg.subjects[s]] ?? []
                for b in r.firstBlock..<(r.firstBlock + r.blockCount) where seg.blockInfos[b].maxKnownTime >= lo {
                    let n = seg.read(block: b, from: .min, to: .max, asOf: .max, into: buffer, allVersions: true)
                    for i in 0..<n where buffer.knownTime[i] >= lo && buffer.knownTime[i] < hi { rows.append(buffer.event(i)) }
                }
                bySubject[seg.subjects[s]] = rows
            }
        }
        for subject in bySubject.keys.sorted() {
            var rows = bySubject[subject]!
            // Stable: rows of equal times keep segment (arrival) order.
            let order = rows.indices.sorted {
                let a = rows[$0], b = rows[$1]
                if a.knownTime != b.knownTime { return a.knownTime < b.knownTime }
                if a.eventTime != b.eventTime { return a.eventTime < b.eventTime }
                return $0 < $1
            }
            rows = order.map { rows[$0] }
            try body(subject, rows)
        }
    }

    /// A replay along known time: every version of every matching row known in [from, to) (and at most `asOf`),
    /// in the order (known time, event time, subject text, arrival). It holds the rows it returns in memory.
    func replayKnown(_ q: StoreQuery, _ body: (StoredEvent) throws -> Void) throws {
        let (subjects, rows) = try knownOrder(q)
        for r in rows { try body(StoredEvent(subject: subjects[r.subject], event: r.event)) }
    }

    /// The rows of `replayKnown`, in its order, each with its subject as an index into `subjects` (the subjects in
    /// the order they were first read).
    func knownOrder(_ q: StoreQuery) throws -> (subjects: [String], rows: [(subject: Int, event: Event)]) {
        var subjects = [String](), index = [String: Int](), all = [(subject: Int, event: Event)]()
        try knownRows(q) { subject, rows in
            let s: Int
            if let i = index[subject] { s = i } else { s = subjects.count; index[subject] = s; subjects.append(subject) }
            for e in rows { all.append((s, e)) }
        }
        // Subjects arrive in text order and each subject's rows in order: a stable sort on the times finishes it.
        let order = all.indices.sorted {
            let a = all[$0].event, b = all[$1].event
            if a.knownTime != b.knownTime { return a.knownTime < b.knownTime }
            if a.eventTime != b.eventTime { return a.eventTime < b.eventTime }
            return $0 < $1
        }
        return (subjects, order.map { all[$0] })
    }

    /// `StoreQuery.whyNothing`, and when the store holds no date in the range, which dates it holds.
    public func whyNothing(_ q: StoreQuery, pattern text: String) -> String {
        let note = q.whyNothing(pattern: text)
        guard q.from < q.to, let range = q.time == .known ? Self.knownDays(q.from, q.to) : q.days else { return note }
        let days = Set(partitions.map(\.day)).sorted()
        if days.isEmpty { return note + "; the store holds no data yet" }
        if days.contains(where: range.contains) { return note }
        return note + "; no data is stored for those dates (the store holds \(days.count == 1 ? "only" : "\(days.count) dates,") "
            + "\(Layout.dateText(day: days.first!))\(days.count > 1 ? " to " + Layout.dateText(day: days.last!) : ""))"
    }

    /// Every matching event in replay order, collected (for tests and small reads).
    public func events(_ q: StoreQuery) throws -> [StoredEvent] {
        var out = [StoredEvent]()
        try replay(q) { out.append($0) }
        return out
    }
}

/// A subject's rows in one segment, a block at a time.
final class SubjectCursor {
    let segment: SegmentReader
    let subject: Int
    let text: String
    /// Its place among the day's subjects in text order (`ReplayMerge`).
    var rank = 0
    /// Sized to the subject: a day of many thin subjects (a full ITCH day) must not hold 56 KiB per cursor.
    let buffer: BlockBuffer
    var position = 0
    private var block: Int
    private let endBlock: Int
    private let from: Int64, to: Int64, asOf: Int64

    init(segment: SegmentReader, subject: Int, query q: StoreQuery) {
        self.segment = segment
        self.subject = subject
        text = segment.subjects[subject]
        buffer = BlockBuffer(rows: segment.ranges[subject].rowCount)
        from = q.from.rawValue; to = q.to.rawValue; asOf = q.knownLimit
        block = segment.firstBlock(subject: subject, from: from)
        let r = segment.ranges[subject]
        endBlock = r.firstBlock + r.blockCount
    }

    /// Loads the next block with visible rows; false when the subject is exhausted.
    func fill() -> Bool {
        position = 0
        while block < endBlock {
            defer { block += 1 }
            if segment.blockInfos[block].minEventTime >= to { block = endBlock; return false }
            if segment.read(block: block, from: from, to: to, asOf: asOf, into: buffer) > 0 { return true }
        }
        buffer.count = 0
        return false
    }

    @inline(__always) var eventTime: Int64 { buffer.eventTime[position] }
}

extension SubjectPattern {
    /// The text every matching subject starts with: the pattern itself when it has no wildcard, else its literal
    /// tokens before the first one, each followed by a dot.
    var literalPrefix: String {
        var out = ""
        for (i, t) in tokens.enumerated() {
            guard case .literal(let s) = t else { return out }
            out += s
            if i < tokens.count - 1 { out += "." }
        }
        return out
    }

    /// Whether some subject under a partition root (`MD.XNAS`, `ALERT`) could match.
    func couldMatch(root: String) -> Bool {
        let parts = root.split(separator: ".", omittingEmptySubsequences: false)
        for (i, part) in parts.enumerated() {
            guard i < tokens.count else { return false }
            switch tokens[i] {
            case .rest: return true
            case .one: continue
            case .literal(let s): if s != part { return false }
            }
        }
        return true
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
